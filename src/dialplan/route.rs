//! TEMPORARY routing shim with the evaluator's public contract (replaced by the real evaluator
//! at merge): a number inside an OPD block rings that extension, everything else is 404.

use std::path::PathBuf;

use super::{Dialplan, NumberClass, Strategy};
use crate::types::Extension;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub forward_always: Option<String>,
    pub forward_busy: Option<String>,
    pub forward_no_answer: Option<(String, u32)>,
    pub dnd: bool,
}

pub trait Directory {
    fn is_assigned(&self, ext: &Extension) -> bool;
    fn features(&self, ext: &Extension) -> Features;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureAction {
    SetForwardAlways(String),
    ClearForward,
    DndOn,
    DndOff,
}

#[derive(Debug, Clone)]
pub enum Decision {
    Ring(RingPlan),
    Trunk {
        number: String,
        class: NumberClass,
        emergency: bool,
    },
    Reject {
        status: u16,
        reason: String,
    },
    Feature(FeatureAction),
}

#[derive(Debug, Clone)]
pub struct RingPlan {
    pub strategy: Strategy,
    pub members: Vec<RingTarget>,
    pub group: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RingTarget {
    pub extension: Extension,
    pub forward_busy: Option<String>,
    pub forward_no_answer: Option<(String, u32)>,
}

#[derive(Debug, Clone)]
pub struct Routing {
    pub decision: Decision,
    pub trace: Vec<TraceStep>,
}

#[derive(Debug, Clone)]
pub struct TraceStep {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub what: String,
}

impl Dialplan {
    pub fn route(
        &self,
        _caller: &Extension,
        dialled: &str,
        _now_unix: i64,
        dir: &dyn Directory,
    ) -> Routing {
        let decision = match dialled.parse::<Extension>() {
            Ok(ext) if self.opd_of(&ext).is_some() && dir.is_assigned(&ext) => {
                let f = dir.features(&ext);
                if f.dnd {
                    Decision::Reject {
                        status: 486,
                        reason: "Do Not Disturb".into(),
                    }
                } else {
                    Decision::Ring(RingPlan {
                        strategy: Strategy::Parallel { timeout_secs: 60 },
                        members: vec![RingTarget {
                            extension: ext,
                            forward_busy: f.forward_busy,
                            forward_no_answer: f.forward_no_answer,
                        }],
                        group: None,
                    })
                }
            }
            _ => Decision::Reject {
                status: 404,
                reason: "Not Found".into(),
            },
        };
        Routing {
            decision,
            trace: Vec::new(),
        }
    }
}
