//! Exact arithmetic on the spec's numbers. Bounds and defaults are kept as
//! written (`serde_json::Number`: an i64, a u64 or a double), never forced
//! through a double, which holds whole numbers exactly only up to 2^53:
//! `maximum: 9223372036854775807` must mean exactly that.

use std::cmp::Ordering;

use serde_json::Number;

/// Largest whole number a double holds exactly (2^53); a whole `3.0`
/// beyond it may stand for several integers, so it is not one.
const EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// `n` as an `i64` when it is a whole number an integer field holds:
/// an integer in the i64 range, or a whole double (`3.0`) that is exact.
pub fn as_integer(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None;
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() <= EXACT_DOUBLE).then_some(f as i64)
}

/// The order of two numbers, exact for every pair of i64, u64 and finite doubles.
pub fn compare(a: &Number, b: &Number) -> Ordering {
    match (whole(a), whole(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => compare_whole_double(x, b.as_f64().unwrap_or(0.0)),
        (None, Some(y)) => compare_whole_double(y, a.as_f64().unwrap_or(0.0)).reverse(),
        (None, None) => {
            a.as_f64().unwrap_or(0.0).partial_cmp(&b.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
    }
}

/// An integer `Number` (i64 or u64) widened so every one compares exactly.
fn whole(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// Compare an integer with a finite double without rounding the integer.
fn compare_whole_double(x: i128, f: f64) -> Ordering {
    // Every double of magnitude 2^64 or more is beyond any i64/u64.
    if f >= 18_446_744_073_709_551_616.0 {
        return Ordering::Less;
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let floor = f.floor();
    // `floor` is whole and within ±2^64, so the cast is exact.
    match x.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn integers_compare_exactly_at_the_edges() {
        assert_eq!(compare(&n("9007199254740993"), &n("9007199254740992")), Ordering::Greater);
        assert_eq!(compare(&n("9223372036854775807"), &n("9223372036854775807")), Ordering::Equal);
        assert_eq!(compare(&n("18446744073709551615"), &n("9223372036854775807")), Ordering::Greater);
        assert_eq!(compare(&n("-9223372036854775808"), &n("-9223372036854775807")), Ordering::Less);
    }

    #[test]
    fn integers_and_doubles_compare_exactly() {
        assert_eq!(compare(&n("9007199254740993"), &n("9007199254740992.0")), Ordering::Greater);
        assert_eq!(compare(&n("3"), &n("3.5")), Ordering::Less);
        assert_eq!(compare(&n("3.5"), &n("3")), Ordering::Greater);
        assert_eq!(compare(&n("-4"), &n("-3.5")), Ordering::Less);
        assert_eq!(compare(&n("3"), &n("3.0")), Ordering::Equal);
        assert_eq!(compare(&n("9223372036854775807"), &n("1e300")), Ordering::Less);
        assert_eq!(compare(&n("-9223372036854775808"), &n("-1e300")), Ordering::Greater);
    }

    #[test]
    fn whole_numbers_an_integer_field_holds() {
        assert_eq!(as_integer(&n("9223372036854775807")), Some(i64::MAX));
        assert_eq!(as_integer(&n("-9223372036854775808")), Some(i64::MIN));
        assert_eq!(as_integer(&n("3.0")), Some(3));
        assert_eq!(as_integer(&n("9223372036854775808")), None);
        assert_eq!(as_integer(&n("3.5")), None);
        assert_eq!(as_integer(&n("1e300")), None);
    }
}
