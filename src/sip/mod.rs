//! The SIP layer: message parsing and editing, digest authentication, transactions.
//! Sans-IO: nothing here touches a socket or reads the clock.

pub mod auth;
pub mod headers;
pub mod message;
pub mod response;
pub mod sdp;
pub mod transaction;
pub mod webrtc_sdp;
