//! The series names a PromQL expression selects, for checking a Grafana dashboard against
//! what `/metrics` exports. A scanner, not a full parser: it skips strings, label matchers
//! (`{…}`), ranges and subqueries (`[…]`), grouping label lists (`by (…)`, `on (…)`, …),
//! numbers and durations, Grafana variables (`$route`, `${route}`, `$__rate_interval`),
//! keywords and function names; every identifier left is a series name. It refuses what it
//! cannot account for (an unknown function, an unclosed string or bracket, a stray
//! character), so a typo in a dashboard is an error rather than a name silently dropped.

use std::collections::BTreeSet;

/// PromQL functions (Prometheus 3), plus `start`/`end` of the `@` modifier.
#[rustfmt::skip]
const FUNCTIONS: &[&str] = &[
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "double_exponential_smoothing", "end", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "start", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "tan", "tanh", "time", "timestamp", "vector", "year",
];

/// Aggregation operators (case-insensitive, like every keyword).
#[rustfmt::skip]
const AGGREGATIONS: &[&str] = &[
    "avg", "bottomk", "count", "count_values", "group", "limit_ratio", "limitk", "max", "min",
    "quantile", "stddev", "stdvar", "sum", "topk",
];

/// Keywords followed by a parenthesised list of label names.
#[rustfmt::skip]
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by", "without", "on", "ignoring", "group_left", "group_right",
];

/// Binary-operator keywords, modifiers and literals.
#[rustfmt::skip]
const OTHER_KEYWORDS: &[&str] = &[
    "and", "or", "unless", "atan2", "bool", "offset", "inf", "nan",
];

/// The series names `expr` selects, in order of first appearance, without duplicates.
pub(crate) fn series_names(expr: &str) -> Result<Vec<String>, String> {
    let b = expr.as_bytes();
    let mut names: Vec<String> = Vec::new();
    let mut parens = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'"' | b'\'' | b'`' => i = skip_string(b, i)?,
            b'#' => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n)
            }
            b'{' => i = skip_group(b, i, b'}')?,
            b'[' => i = skip_group(b, i, b']')?,
            b'}' | b']' => return Err(format!("unbalanced `{}` at {i}", c as char)),
            b'(' => {
                parens += 1;
                i += 1;
            }
            b')' => {
                parens = parens
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced `)` at {i}"))?;
                i += 1;
            }
            b'$' => i = skip_variable(b, i)?,
            b'0'..=b'9' | b'.' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'=' | b'!' | b'<' | b'>' | b',' | b'@' => {
                i += 1
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let ident = &expr[start..i];
                let keyword = ident.to_ascii_lowercase();
                let next = b[i..].iter().find(|c| !c.is_ascii_whitespace()).copied();
                if LABEL_LIST_KEYWORDS.contains(&keyword.as_str()) {
                    if next == Some(b'(') {
                        let open = i + b[i..].iter().position(|&c| c == b'(').unwrap_or(0);
                        i = skip_group(b, open, b')')?;
                    }
                } else if AGGREGATIONS.contains(&keyword.as_str())
                    || OTHER_KEYWORDS.contains(&keyword.as_str())
                {
                    // An operator, not a series.
                } else if next == Some(b'(') {
                    if !FUNCTIONS.contains(&ident) {
                        return Err(format!("unknown function `{ident}`"));
                    }
                } else if !names.iter().any(|n| n == ident) {
                    names.push(ident.to_owned());
                }
            }
            _ => return Err(format!("unexpected `{}` at {i}", c as char)),
        }
    }
    if parens != 0 {
        return Err(format!("{parens} unclosed `(`"));
    }
    Ok(names)
}

/// The series names of a Grafana query variable: `label_values(SELECTOR, label)`,
/// `query_result(EXPR)`, or none for `label_values(label)`, `label_names()`, `metrics(re)`.
pub(crate) fn variable_series_names(query: &str) -> Result<Vec<String>, String> {
    let q = query.trim();
    let inner = |prefix: &str| {
        q.strip_prefix(prefix)
            .and_then(|rest| rest.trim_start().strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(args) = inner("label_values") {
        return match args.rsplit_once(',') {
            Some((selector, label)) if is_label_name(label.trim()) => series_names(selector),
            Some(_) => Err(format!("not a label name in `{q}`")),
            None if is_label_name(args.trim()) => Ok(Vec::new()),
            None => Err(format!("not a label name in `{q}`")),
        };
    }
    if let Some(expr) = inner("query_result") {
        return series_names(expr);
    }
    if inner("label_names").is_some() || inner("metrics").is_some() {
        return Ok(Vec::new());
    }
    Err(format!("not a Grafana Prometheus variable query: `{q}`"))
}

/// The metric family a series belongs to: histogram and summary series lose their
/// `_bucket`, `_sum` or `_count` suffix.
pub(crate) fn family(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// The distinct families of the series names of `expr`.
pub(crate) fn families(expr: &str) -> Result<BTreeSet<String>, String> {
    Ok(series_names(expr)?
        .iter()
        .map(|s| family(s).to_owned())
        .collect())
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Index just past the string literal starting at `start` (`"…"` and `'…'` with backslash
/// escapes, `` `…` `` raw).
fn skip_string(b: &[u8], start: usize) -> Result<usize, String> {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote != b'`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unclosed string starting at {start}"))
}

/// Index just past the group opened at `start` and closed by `close`, skipping strings and
/// nested groups of the same kind.
fn skip_group(b: &[u8], start: usize, close: u8) -> Result<usize, String> {
    let open = b[start];
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i)?;
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("unclosed `{}` at {start}", open as char))
}

/// Index just past a Grafana variable (`$name`, `${name}`, `${name:format}`).
fn skip_variable(b: &[u8], start: usize) -> Result<usize, String> {
    let i = start + 1;
    if b.get(i) == Some(&b'{') {
        return b[i..]
            .iter()
            .position(|&c| c == b'}')
            .map(|n| i + n + 1)
            .ok_or_else(|| format!("unclosed `${{` at {start}"));
    }
    let len = b[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    if len == 0 {
        return Err(format!("a lone `$` at {start}"));
    }
    Ok(i + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        series_names(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn finds_exactly_the_series_of_typical_dashboard_queries() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (route, le) (rate(gatehouse_http_request_duration_seconds_bucket{job=~"$job", route=~"$route"}[$__rate_interval])))"#
            ),
            ["gatehouse_http_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names(
                r#"sum by (route) (rate(a_total{status_class="5xx", x="sum(b_total)"}[5m])) / sum by (route) (rate(a_total[5m]))"#
            ),
            ["a_total"]
        );
        assert_eq!(
            names("sum(rate(x_sum[1m])) by (route) / ignoring(le) group_left(version) sum without (instance) (rate(x_count[1m] offset 5m))"),
            ["x_sum", "x_count"]
        );
        assert_eq!(
            names(
                r#"count(up_gauge{a="}"} == 0) or vector(0) and on (instance) build_info unless BOOL_metric"#
            ),
            ["up_gauge", "build_info", "BOOL_metric"]
        );
        assert_eq!(
            names(
                "time() - last_reload_seconds{instance=~\"${instance:regex}\"} * 1000 > bool 1e-9"
            ),
            ["last_reload_seconds"]
        );
        assert_eq!(
            names(
                r#"label_replace(rss_bytes, "dst", "$1", "src", "(.*)") + max_over_time(rss_bytes[1h:5m]) @ end()"#
            ),
            ["rss_bytes"]
        );
        assert_eq!(
            names("SUM BY (x) (rate(ns:recording:rate5m[5m]))  # a comment naming not_a_metric"),
            ["ns:recording:rate5m"]
        );
        assert_eq!(names("42"), Vec::<String>::new());
    }

    #[test]
    fn refuses_what_it_cannot_account_for() {
        for bad in [
            "histogram_quantil(0.9, x_bucket)",
            "sum(rate(x[5m])",
            "rate(x[5m]))",
            r#"x{a="b}"#,
            "rate(x[5m)",
            "x ~ y",
            "x{a=\"1\"}}",
            "$",
        ] {
            assert!(series_names(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn families_strip_histogram_suffixes() {
        assert_eq!(
            families("rate(h_bucket[1m]) + rate(h_sum[1m]) / rate(h_count[1m]) + c_total")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["c_total", "h"]
        );
        assert_eq!(
            family("gatehouse_http_requests_total"),
            "gatehouse_http_requests_total"
        );
    }

    #[test]
    fn grafana_variable_queries() {
        assert_eq!(
            variable_series_names(
                r#"label_values(http_requests_total{job=~"$job", a="x,y"}, route)"#
            )
            .unwrap(),
            ["http_requests_total"]
        );
        assert_eq!(
            variable_series_names("label_values(job)").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            variable_series_names("query_result(topk(5, sum by (route) (rate(r_total[1h]))))")
                .unwrap(),
            ["r_total"]
        );
        assert!(variable_series_names("label_values(x, not a label)").is_err());
        assert!(variable_series_names("select 1").is_err());
    }
}
