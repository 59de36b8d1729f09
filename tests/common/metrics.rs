//! The Prometheus text the server serves on /metrics, parsed strictly.

use super::http_get;
use std::collections::BTreeMap;

/// One sample: family name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// One sample line of the Prometheus text format: `name{label="value",...} value [timestamp]`.
pub fn parse_sample(line: &str) -> Result<Sample, String> {
    let err = |why: &str| format!("{why}: {line:?}");
    let mut it = line.char_indices().peekable();
    let name_end = match it.next() {
        Some((_, c)) if is_name_start(c) => {
            let mut end = line.len();
            for (i, c) in it.by_ref() {
                if !is_name_char(c) {
                    end = i;
                    break;
                }
            }
            end
        }
        _ => return Err(err("bad metric name")),
    };
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or_else(|| err("label without '='"))?;
            let lname = &rest[..eq];
            if !lname.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                || !lname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(err("bad label name"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or_else(|| err("label value not quoted"))?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => return Err(err("bad escape in a label value")),
                    },
                    Some((_, '\n')) | None => return Err(err("unterminated label value")),
                    Some((_, c)) => value.push(c),
                }
            };
            labels.insert(lname.to_string(), value);
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(err("labels not separated by ','"));
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| err("no space before the value"))?;
    let mut fields = rest.split(' ');
    let value_text = fields.next().unwrap_or_default();
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        t => t.parse::<f64>().map_err(|_| err("value is not a number"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| err("bad timestamp"))?;
    }
    if fields.next().is_some() {
        return Err(err("trailing fields"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parse a whole exposition: every line a comment (`# HELP` / `# TYPE` well formed) or a
/// sample whose family was typed before it.
pub fn parse_metrics(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let words: Vec<&str> = c.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(format!("unknown type: {line:?}"));
                    }
                    typed.insert(name.to_string(), kind.to_string());
                }
                ["HELP", _name, ..] => {}
                _ => {} // a plain comment
            }
            continue;
        }
        let s = parse_sample(line)?;
        if !typed.contains_key(&s.name) {
            return Err(format!(
                "sample of a family with no # TYPE before it: {line:?}"
            ));
        }
        if typed[&s.name] == "counter" && s.value < 0.0 {
            return Err(format!("negative counter: {line:?}"));
        }
        samples.push(s);
    }
    Ok(samples)
}

/// The sum of every sample of family `name`.
pub fn sum_of(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// `GET /metrics` on the HTTP port, parsed; panics when it is not well-formed.
pub fn get_metrics(http_port: u16) -> Vec<Sample> {
    let r = http_get(http_port, "/metrics");
    assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
    let text = r.text();
    parse_metrics(&text).unwrap_or_else(|e| panic!("/metrics: {e}\nwhole text:\n{text}"))
}
