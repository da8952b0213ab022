//! Asterisk-style dial patterns: parsing, matching a dialled string, and the specificity order
//! that decides which of several matching rules wins. Pure functions, no I/O.
//!
//! A pattern is either a literal number (`0`, `112`, `*73`) or, with a leading `_`, a sequence
//! of elements: a literal character (`0`-`9`, `*`, `#`, `+`), `X` (0-9), `Z` (1-9), `N` (2-9),
//! a class such as `[1-5]` or `[0357-9]`, and at the very end optionally `.` (one or more
//! characters) or `!` (zero or more characters).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a pattern is malformed; the message is meant for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern '{pattern}': {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// A set of dialable characters: bits 0-9 for the digits, then `*`, `#`, `+`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CharSet(u16);

impl CharSet {
    const DIGITS: CharSet = CharSet(0x3ff);

    fn bit(c: char) -> Option<u16> {
        match c {
            '0'..='9' => Some(c as u16 - '0' as u16),
            '*' => Some(10),
            '#' => Some(11),
            '+' => Some(12),
            _ => None,
        }
    }

    fn digit_range(lo: u8, hi: u8) -> CharSet {
        CharSet((lo..=hi).fold(0, |acc, d| acc | 1 << d))
    }

    fn contains(self, c: char) -> bool {
        CharSet::bit(c).is_some_and(|b| self.0 & (1 << b) != 0)
    }

    fn len(self) -> u16 {
        self.0.count_ones() as u16
    }

    fn intersects(self, other: CharSet) -> bool {
        self.0 & other.0 != 0
    }
}

/// What may follow the fixed elements of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing: the dialled string must end here.
    End,
    /// `.`: one or more further characters.
    OneOrMore,
    /// `!`: zero or more further characters.
    ZeroOrMore,
}

/// A parsed dial pattern, compiled to one character set per position plus a tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    elements: Vec<CharSet>,
    tail: Tail,
}

impl Pattern {
    /// The pattern as written in the file.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True for a pattern without wildcards (`0`, `112`, `_2300`).
    pub fn is_literal(&self) -> bool {
        self.tail == Tail::End && self.elements.iter().all(|e| e.len() == 1)
    }

    /// Whether the dialled string matches the whole pattern.
    pub fn matches(&self, digits: &str) -> bool {
        let n = self.elements.len();
        let count = digits.chars().count();
        let length_ok = match self.tail {
            Tail::End => count == n,
            Tail::OneOrMore => count > n,
            Tail::ZeroOrMore => count >= n,
        };
        length_ok
            && self
                .elements
                .iter()
                .zip(digits.chars())
                .all(|(set, c)| set.contains(c))
    }

    /// Whether some dialled string matches both patterns.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let (short, long) = if self.elements.len() <= other.elements.len() {
            (self, other)
        } else {
            (other, self)
        };
        let common = short.elements.len();
        let prefix_ok = short
            .elements
            .iter()
            .zip(&long.elements)
            .all(|(a, b)| a.intersects(*b));
        // After the common prefix the longer pattern's extra elements (if any) and tail must be
        // absorbable by the shorter pattern's tail.
        let extra = long.elements.len() > common;
        let tail_ok = match short.tail {
            Tail::End => !extra && long.tail != Tail::OneOrMore,
            Tail::OneOrMore => extra || long.tail != Tail::End,
            Tail::ZeroOrMore => true,
        };
        prefix_ok && tail_ok
    }

    /// The key that orders patterns from least to most specific: compared position by
    /// position from the left, a literal beats a class, a smaller class beats a larger one
    /// (`[1-5]` < `N` < `Z` < `X`), any single character beats `.`, and `.` beats `!`.
    pub fn specificity(&self) -> Specificity {
        let mut ranks: Vec<u16> = self.elements.iter().map(|e| e.len()).collect();
        ranks.push(match self.tail {
            Tail::End => 0,
            Tail::OneOrMore => 100,
            Tail::ZeroOrMore => 101,
        });
        Specificity(ranks)
    }
}

/// How specific a pattern is. `a > b` means `a` is more specific and wins when both match;
/// equal values are a tie (a load error when the two patterns can match the same number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specificity(Vec<u16>);

impl Ord for Specificity {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower ranks (fewer choices per position) are more specific, so the order is reversed.
        other.0.cmp(&self.0)
    }
}

impl PartialOrd for Specificity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| PatternError {
            pattern: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(fail("the pattern is empty".into()));
        }
        let Some(body) = s.strip_prefix('_') else {
            return parse_literal(s).map_err(fail);
        };
        if body.is_empty() {
            return Err(fail("nothing follows '_'".into()));
        }
        let mut elements = Vec::new();
        let mut tail = Tail::End;
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if tail != Tail::End {
                return Err(fail(
                    "'.' and '!' may only be the last character of a pattern".into(),
                ));
            }
            let set = match c {
                'X' | 'x' => CharSet::DIGITS,
                'Z' | 'z' => CharSet::digit_range(1, 9),
                'N' | 'n' => CharSet::digit_range(2, 9),
                '.' => {
                    tail = Tail::OneOrMore;
                    continue;
                }
                '!' => {
                    tail = Tail::ZeroOrMore;
                    continue;
                }
                '[' => parse_class(&mut chars).map_err(fail)?,
                ']' => return Err(fail("']' without a matching '['".into())),
                c => match CharSet::bit(c) {
                    Some(b) => CharSet(1 << b),
                    None => return Err(fail(format!("unknown character '{c}'"))),
                },
            };
            elements.push(set);
        }
        Ok(Pattern {
            source: s.to_owned(),
            elements,
            tail,
        })
    }
}

/// A pattern without `_`: every character stands for itself.
fn parse_literal(s: &str) -> Result<Pattern, String> {
    let mut elements = Vec::new();
    for c in s.chars() {
        match CharSet::bit(c) {
            Some(b) => elements.push(CharSet(1 << b)),
            None if "XxZzNn[.!".contains(c) => {
                return Err(format!(
                    "'{c}' is a wildcard only in patterns that start with '_' (write '_{s}')"
                ))
            }
            None => return Err(format!("unknown character '{c}'")),
        }
    }
    Ok(Pattern {
        source: s.to_owned(),
        elements,
        tail: Tail::End,
    })
}

/// The inside of `[...]` after the `[`: digits and digit ranges `a-b`, up to `]`.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<CharSet, String> {
    let mut set = 0u16;
    loop {
        let c = chars.next().ok_or("'[' is not closed by ']'")?;
        match c {
            ']' if set == 0 => return Err("empty class '[]'".into()),
            ']' => return Ok(CharSet(set)),
            '0'..='9' => {
                let lo = c as u8 - b'0';
                if chars.peek() == Some(&'-') {
                    chars.next();
                    let hi = match chars.next() {
                        Some(h @ '0'..='9') => h as u8 - b'0',
                        Some(']') => return Err(format!("range '{c}-' has no end")),
                        None => return Err("'[' is not closed by ']'".into()),
                        Some(h) => return Err(format!("unknown character '{h}' in a class")),
                    };
                    if hi < lo {
                        return Err(format!("range '{c}-{hi}' is reversed"));
                    }
                    set |= CharSet::digit_range(lo, hi).0;
                } else {
                    set |= 1 << lo;
                }
            }
            '-' => return Err("range in a class has no start".into()),
            c => return Err(format!("unknown character '{c}' in a class")),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn literal_patterns_match_exactly() {
        assert!(p("0").matches("0"));
        assert!(!p("0").matches("00"));
        assert!(p("*73").matches("*73"));
        assert!(p("112").is_literal());
        assert!(p("_2300").is_literal());
        assert!(!p("_2XXX").is_literal());
    }

    #[test]
    fn wildcards() {
        assert!(p("_2XXX").matches("2300"));
        assert!(!p("_2XXX").matches("230"));
        assert!(!p("_2XXX").matches("23000"));
        assert!(!p("_2XXX").matches("3300"));
        assert!(p("_Z").matches("1") && !p("_Z").matches("0"));
        assert!(p("_N").matches("2") && !p("_N").matches("1"));
        assert!(p("_x").matches("7"), "lowercase wildcards are accepted");
        assert!(p("_[1-35]").matches("2") && p("_[1-35]").matches("5"));
        assert!(!p("_[1-35]").matches("4"));
    }

    #[test]
    fn tails() {
        assert!(p("_08.").matches("0812345"));
        assert!(!p("_08.").matches("08"));
        assert!(p("_08!").matches("08"));
        assert!(p("_08!").matches("0812"));
        assert!(!p("_08!").matches("07"));
        assert!(p("_+.").matches("+6281234"));
        assert!(p("_!").matches(""));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in [
            "", "_", "_2A", "_[12", "_[]", "_[5-1]", "_[1-]", "_[-1]", "_2]", "_2.X", "_!1",
            "2XXX", "12a",
        ] {
            assert!(
                bad.parse::<Pattern>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let e = "_[12".parse::<Pattern>().unwrap_err();
        assert!(e.reason.contains("not closed"), "{e}");
        let e = "_2A".parse::<Pattern>().unwrap_err();
        assert!(e.reason.contains("unknown character 'A'"), "{e}");
    }

    #[test]
    fn specificity_order() {
        assert!(p("_23XX").specificity() > p("_2XXX").specificity());
        assert!(p("_2XXX").specificity() > p("_2XX.").specificity());
        assert!(p("_2XX.").specificity() > p("_2XX!").specificity());
        assert!(p("_2[3-4]XX").specificity() > p("_2NXX").specificity());
        assert!(p("_2NXX").specificity() > p("_2ZXX").specificity());
        assert!(p("_2ZXX").specificity() > p("_2XXX").specificity());
        assert!(p("_08.").specificity() > p("_0Z.").specificity());
        assert!(p("_2XXX").specificity() > p("_2XXX.").specificity());
        assert_eq!(p("2300").specificity(), p("_2300").specificity());
        assert_eq!(p("_2[34]X").specificity(), p("_2[56]X").specificity());
    }

    #[test]
    fn overlap() {
        assert!(p("_2[34]X").overlaps(&p("_2[45]X")));
        assert!(!p("_2[34]X").overlaps(&p("_2[56]X")));
        assert!(p("_2XXX").overlaps(&p("_23.")));
        assert!(!p("_2XX").overlaps(&p("_2XX.")));
        assert!(p("_2XX").overlaps(&p("_2XX!")));
        assert!(!p("_2XXX").overlaps(&p("_2XX")));
        assert!(p("_0Z.").overlaps(&p("_08.")));
        assert!(!p("_00.").overlaps(&p("_0Z.")));
        assert!(p("_.").overlaps(&p("_5!")));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Elements whose intersections stay non-empty when restricted to the digits
        /// {0, 1, 2, 5}, so brute force over those digits decides overlap exactly.
        fn pattern() -> impl Strategy<Value = Pattern> {
            let elem = prop::sample::select(vec!["1", "2", "X", "N", "Z", "[1-3]", "[05]"]);
            let tail = prop::sample::select(vec!["", ".", "!"]);
            (prop::collection::vec(elem, 0..4), tail)
                .prop_filter_map("'_' alone is not a pattern", |(elems, tail)| {
                    format!("_{}{tail}", elems.concat()).parse().ok()
                })
        }

        fn all_strings(max_len: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut layer = vec![String::new()];
            for _ in 0..max_len {
                layer = layer
                    .iter()
                    .flat_map(|s| "0125".chars().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(layer.iter().cloned());
            }
            out
        }

        proptest! {
            #[test]
            fn overlaps_iff_a_common_number_exists(a in pattern(), b in pattern()) {
                let common = all_strings(5).into_iter().find(|s| a.matches(s) && b.matches(s));
                prop_assert_eq!(a.overlaps(&b), common.is_some(), "{} vs {}: {:?}", a, b, common);
                prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
            }

            #[test]
            fn specificity_ties_only_for_same_shape(a in pattern(), b in pattern()) {
                if a.specificity() == b.specificity() {
                    prop_assert_eq!(a.elements.len(), b.elements.len());
                    prop_assert_eq!(a.tail, b.tail);
                }
            }
        }
    }
}
