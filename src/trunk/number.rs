//! Number formats of the province's carriers: the dialplan sends numbers in the national form
//! it classifies (`0536…`, `0812…`, `00…` abroad, `+…`, emergency `112`), and each carrier
//! wants them its own way (E.164 `+62…`, national `0…`, or local numbers of its area without
//! the area code). Inbound, a carrier's number in any of these forms is brought back to the
//! national form, which is how DIDs are written in `province.toml`.
//!
//! Pure functions; no state.

use crate::dialplan::NumberFormat;

/// Indonesia's country code.
const COUNTRY: &str = "62";

/// `number` (national form, as the dialplan sends it) written as the carrier wants it.
/// Short numbers (emergency and service numbers: no leading `0` or `+`) are sent unchanged.
pub fn to_carrier(number: &str, format: &NumberFormat) -> String {
    let national = to_national(number);
    match format {
        NumberFormat::National => national,
        NumberFormat::E164 => {
            if let Some(intl) = national.strip_prefix("00") {
                format!("+{intl}")
            } else if let Some(rest) = national.strip_prefix('0') {
                format!("+{COUNTRY}{rest}")
            } else {
                national
            }
        }
        NumberFormat::Local { area } => match national.strip_prefix(area.as_str()) {
            // Local numbers have 7 or 8 digits after the area code.
            Some(local) if (5..=8).contains(&local.len()) && !local.starts_with('0') => {
                local.to_owned()
            }
            _ => national,
        },
    }
}

/// `number` in the national form: `+62…` → `0…`, `62…` of national length → `0…`,
/// `+…` abroad → `00…`; a `tel:`-style visual separator (`-`, `.`, space, parentheses) is
/// dropped. Anything else is returned as it is.
pub fn to_national(number: &str) -> String {
    let digits: String = number
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' ' | '(' | ')'))
        .collect();
    if let Some(rest) = digits.strip_prefix('+') {
        return match rest.strip_prefix(COUNTRY) {
            Some(national) => format!("0{national}"),
            None => format!("00{rest}"),
        };
    }
    digits
}

/// `number` (in any form) as an E.164 string for a P-Asserted-Identity or From user:
/// `+62…`; a number that is not national is returned in its national form.
pub fn to_e164(number: &str) -> String {
    to_carrier(number, &NumberFormat::E164)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> NumberFormat {
        NumberFormat::Local {
            area: "0536".into(),
        }
    }

    #[test]
    fn numbers_go_out_in_each_carriers_format() {
        let cases = [
            // (as the dialplan sends it, E.164, national, local 0536)
            ("05363231110", "+625363231110", "05363231110", "3231110"),
            (
                "0812345678901",
                "+62812345678901",
                "0812345678901",
                "0812345678901",
            ),
            ("0215551234", "+62215551234", "0215551234", "0215551234"),
            (
                "0061299990000",
                "+61299990000",
                "0061299990000",
                "0061299990000",
            ),
            (
                "+61299990000",
                "+61299990000",
                "0061299990000",
                "0061299990000",
            ),
            ("+625363231110", "+625363231110", "05363231110", "3231110"),
            ("112", "112", "112", "112"),
            ("118", "118", "118", "118"),
        ];
        for (n, e164, national, loc) in cases {
            assert_eq!(to_carrier(n, &NumberFormat::E164), e164, "{n}");
            assert_eq!(to_carrier(n, &NumberFormat::National), national, "{n}");
            assert_eq!(to_carrier(n, &local()), loc, "{n}");
        }
    }

    #[test]
    fn inbound_numbers_come_back_national() {
        assert_eq!(to_national("+625363231110"), "05363231110");
        assert_eq!(to_national("05363231110"), "05363231110");
        assert_eq!(to_national("+62 536-323-1110"), "05363231110");
        assert_eq!(to_national("+61299990000"), "0061299990000");
        assert_eq!(to_national("3231110"), "3231110");
        assert_eq!(to_e164("(0536) 3231110"), "+625363231110");
    }
}
