//! RFC 3339 timestamps to microseconds since the epoch.
//!
//! Timestamp ranges parse the record's string on every evaluation, and chrono's general RFC 3339
//! parser was a large share of a record's evaluation cost. The common shape,
//! `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, is parsed here by hand; anything else (lowercase
//! `t`/`z`, a space separator, leap second `:60`, more than 9 fraction digits, malformed text)
//! goes to chrono, which stays the authority on what is valid. The fast path only ever accepts
//! text chrono accepts and returns the same value (property-tested below).

/// Microseconds since the Unix epoch, or `None` when `text` is not RFC 3339.
pub(crate) fn parse_rfc3339_micros(text: &str) -> Option<i64> {
    match parse_common(text.as_bytes()) {
        Some(micros) => Some(micros),
        None => chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros()),
    }
}

/// `count` ASCII digits at `at` as a number; `None` if any is not a digit or the text is short.
#[inline]
fn digits(bytes: &[u8], at: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(at..at + count)?;
    let mut value = 0u32;
    for &b in slice {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u32::from(digit);
    }
    Some(value)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), H. Hinnant's algorithm.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The hand-written path; `None` means "not the common shape", not "invalid".
fn parse_common(bytes: &[u8]) -> Option<i64> {
    // YYYY-MM-DDTHH:MM:SS is 19 bytes, the shortest zone (`Z`) one more. A fixed-size array
    // lets the digit reads below go without bounds checks.
    let (Some(head), true) = (bytes.first_chunk::<19>(), bytes.len() >= 20) else {
        return None;
    };
    if head[4] != b'-'
        || head[7] != b'-'
        || head[10] != b'T'
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let digit = |i: usize| u32::from(head[i].wrapping_sub(b'0'));
    // Every digit position at once: any byte that is not 0-9 makes its value above 9.
    let not_digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
        .iter()
        .fold(0, |worst, &i| worst.max(digit(i)));
    if not_digits > 9 {
        return None;
    }
    let year = i64::from(digit(0) * 1000 + digit(1) * 100 + digit(2) * 10 + digit(3));
    let month = digit(5) * 10 + digit(6);
    let day = digit(8) * 10 + digit(9);
    let hour = digit(11) * 10 + digit(12);
    let minute = digit(14) * 10 + digit(15);
    let second = digit(17) * 10 + digit(18);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if bytes[at] == b'.' {
        at += 1;
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let count = at - start;
        if count == 0 || count > 9 {
            return None;
        }
        // Fraction digits beyond the sixth are truncated, as chrono's timestamp_micros does.
        let mut fraction = 0i64;
        for &b in &bytes[start..start + count.min(6)] {
            fraction = fraction * 10 + i64::from(b - b'0');
        }
        for _ in count..6 {
            fraction *= 10;
        }
        micros = fraction;
    }
    let offset_seconds = match bytes.get(at..)? {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let hours = digits(rest, 0, 2)?;
            let minutes = digits(rest, 3, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let local_seconds =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((local_seconds - offset_seconds) * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_micros(text: &str) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros())
    }

    #[test]
    fn common_forms_match_chrono() {
        for text in [
            "2020-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2024-02-29T12:00:00+02:00",
            "2024-06-01T12:00:00.5-07:30",
            "2024-06-01T12:00:00.123456789+00:00",
            "2024-06-01T12:00:00-00:00",
            "1900-03-01T00:00:00+23:59",
        ] {
            assert_eq!(parse_common(text.as_bytes()), chrono_micros(text), "{text}");
            assert!(
                parse_common(text.as_bytes()).is_some(),
                "{text} takes the fast path"
            );
        }
    }

    #[test]
    fn other_forms_fall_back_to_chrono() {
        for text in [
            "2024-06-01t12:00:00z",
            "2024-06-01 12:00:00Z",
            "2016-12-31T23:59:60Z",
            "2024-06-01T12:00:00.1234567891Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-06-01T24:00:00Z",
            "2024-06-01T12:00:00",
            "2024-06-01T12:00:00.Z",
            "2024-06-01T12:00:00+2:00",
            "2024-06-01T12:00:00+24:00",
            "yesterday",
            "",
            "２０２４-06-01T12:00:00Z",
        ] {
            assert_eq!(parse_common(text.as_bytes()), None, "{text}");
            assert_eq!(parse_rfc3339_micros(text), chrono_micros(text), "{text}");
        }
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_chrono(
            year in 0u32..10_000,
            month in 0u32..14,
            day in 0u32..33,
            hour in 0u32..26,
            minute in 0u32..62,
            second in 0u32..62,
            fraction in proptest::option::of("[0-9]{0,11}"),
            zone in prop_oneof![
                Just("Z".to_owned()),
                Just("z".to_owned()),
                Just(String::new()),
                (0u32..26, 0u32..62, any::<bool>())
                    .prop_map(|(h, m, neg)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
            ],
        ) {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
            );
            let expected = chrono_micros(&text);
            if let Some(fast) = parse_common(text.as_bytes()) {
                prop_assert_eq!(Some(fast), expected, "{}", text);
            }
            prop_assert_eq!(parse_rfc3339_micros(&text), expected, "{}", text);
        }
    }
}
