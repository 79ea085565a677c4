//! Parsers for the text forms event values take, exact and without dependencies.
//!
//! [`Event`](crate::Event) uses them for its typed getters; they are public for values found
//! elsewhere, such as in a JSON body or a receiver's answer.

/// A decimal amount in text form (`"149.90"`, `"-3.5"`, `"12"`) in minor units (cents):
/// `14990`, `-350`, `1200`.
///
/// Exact: the digits are read as text, never through a float. More than two decimals are
/// rounded half away from zero (`"0.125"` → `13`), as the template helper `{{cents X}}` does.
/// Surrounding whitespace and a leading `+` are accepted; anything else (exponents, thousands
/// separators, `"1."`, `".5"`, an empty string) and amounts beyond `i64` give `None`.
///
/// ```
/// use postwire_sdk::parse::cents;
/// assert_eq!(cents("149.90"), Some(14990));
/// assert_eq!(cents("0.1"), Some(10));
/// assert_eq!(cents("-0.005"), Some(-1));
/// assert_eq!(cents("1e3"), None);
/// ```
pub fn cents(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction = fraction.unwrap_or("");
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || unsigned.ends_with('.') {
        return None;
    }
    let mut magnitude: i64 = 0;
    for digit in whole.bytes() {
        magnitude = magnitude.checked_mul(10)?.checked_add(i64::from(digit - b'0'))?;
    }
    let mut digits = fraction.bytes();
    for _ in 0..2 {
        let digit = digits.next().map_or(0, |d| d - b'0');
        magnitude = magnitude.checked_mul(10)?.checked_add(i64::from(digit))?;
    }
    if digits.next().is_some_and(|d| d >= b'5') {
        magnitude = magnitude.checked_add(1)?;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// An RFC 3339 timestamp (`2026-11-20T14:03:00Z`, `2026-11-20T15:03:00.250+01:00`) in seconds
/// since 1970-01-01T00:00:00Z, fractions of a second dropped (rounded down).
///
/// Accepts `T`, `t` or a space between date and time, `Z`, `z` or a `±HH:MM` offset, and a
/// leap second (`:60`, counted as `:59`). Dates are checked (no 31st of April, 29th of
/// February only in leap years); anything else, such as a date without a time, gives `None`.
///
/// ```
/// use postwire_sdk::parse::unix_seconds;
/// assert_eq!(unix_seconds("2026-11-20T14:03:00Z"), Some(1_795_183_380));
/// assert_eq!(unix_seconds("2026-11-20T15:03:00+01:00"), Some(1_795_183_380));
/// assert_eq!(unix_seconds("2026-11-20"), None);
/// ```
pub fn unix_seconds(text: &str) -> Option<i64> {
    let text = text.trim().as_bytes();
    // YYYY-MM-DDTHH:MM:SS is 19 bytes; the offset comes after, the fraction before it.
    if text.len() < 20 {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .iter()
            .try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, byte)| text[at] != byte) || !matches!(text[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (hours, minutes) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let second = second.min(59);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date, proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_are_exact() {
        assert_eq!(cents("149.90"), Some(14990));
        assert_eq!(cents("149.9"), Some(14990));
        assert_eq!(cents("149"), Some(14900));
        assert_eq!(cents("0.07"), Some(7));
        assert_eq!(cents(" 12.50 "), Some(1250));
        assert_eq!(cents("+1.01"), Some(101));
        assert_eq!(cents("-3.5"), Some(-350));
        assert_eq!(cents("-0"), Some(0));
        // 0.29 * 100 is 28.999999999999996 as a float.
        assert_eq!(cents("0.29"), Some(29));
        assert_eq!(cents("1.005"), Some(101));
        assert_eq!(cents("19.99"), Some(1999));
    }

    #[test]
    fn cents_round_half_away_from_zero() {
        assert_eq!(cents("0.125"), Some(13));
        assert_eq!(cents("0.124999"), Some(12));
        assert_eq!(cents("-0.125"), Some(-13));
        assert_eq!(cents("-0.005"), Some(-1));
        assert_eq!(cents("2.9950"), Some(300));
    }

    #[test]
    fn cents_refuse_what_is_not_a_plain_decimal() {
        for text in [
            "", " ", "-", "+", ".5", "1.", "1.2.3", "1e3", "1,50", "abc", "12a", "--1", "0x10", "NaN", "1 2",
        ] {
            assert_eq!(cents(text), None, "{text:?}");
        }
        assert_eq!(cents("92233720368547758.07"), Some(i64::MAX));
        assert_eq!(cents("92233720368547758.08"), None);
        assert_eq!(cents("99999999999999999999"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-11-20T14:03:00Z"), Some(1_795_183_380));
        assert_eq!(unix_seconds("2026-11-02T18:22:10Z"), Some(1_793_643_730));
        assert_eq!(unix_seconds("2026-11-20t14:03:00z"), Some(1_795_183_380));
        assert_eq!(unix_seconds("2026-11-20 14:03:00Z"), Some(1_795_183_380));
        assert_eq!(unix_seconds("2026-11-20T15:03:00+01:00"), Some(1_795_183_380));
        assert_eq!(unix_seconds("2026-11-20T09:33:00-04:30"), Some(1_795_183_380));
        assert_eq!(unix_seconds("2026-11-20T14:03:00.999Z"), Some(1_795_183_380));
        assert_eq!(unix_seconds("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(unix_seconds("1969-12-31T23:59:59.5Z"), Some(-1));
        assert_eq!(unix_seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(unix_seconds("2016-12-31T23:59:60Z"), Some(1_483_228_799));
        assert_eq!(unix_seconds("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
        assert_eq!(unix_seconds("9999-12-31T23:59:59Z"), Some(253_402_300_799));
    }

    #[test]
    fn timestamps_refuse_what_is_not_rfc_3339() {
        for text in [
            "",
            "2026-11-20",
            "2026-11-20T14:03:00",
            "2026-11-20T14:03Z",
            "2026-11-20T14:03:00+0100",
            "2026-11-20T14:03:00+01",
            "2026-11-20T14:03:00.Z",
            "2026-13-20T14:03:00Z",
            "2026-04-31T14:03:00Z",
            "2026-02-29T14:03:00Z",
            "1900-02-29T00:00:00Z",
            "2026-11-20T24:00:00Z",
            "2026-11-20T14:60:00Z",
            "2026-11-20T14:03:61Z",
            "2026-11-20T14:03:00+24:00",
            "2026/11/20T14:03:00Z",
            "2026-11-20X14:03:00Z",
            "20261120T140300Z",
            "2026-11-20T14:03:00Z trailing",
            "+2026-11-20T14:03:00Z",
        ] {
            assert_eq!(unix_seconds(text), None, "{text:?}");
        }
    }

    #[test]
    fn days_from_civil_agrees_with_a_day_count() {
        let mut days = 0;
        for year in 1970..2100 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), days, "{year}-{month}-{day}");
                    days += 1;
                }
            }
        }
    }
}
