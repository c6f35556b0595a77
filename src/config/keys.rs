//! Table-driven mapping from properties keys to config fields, shared by broker and namesrv.

use std::collections::BTreeMap;

use super::properties::Property;
use super::values::edit_distance;
use super::{ConfigError, ConfigWarnings};

/// What a setter may consult besides the value.
pub(crate) struct SetContext<'a> {
    /// Home directory for `${user.home}` / `~` expansion.
    pub home: Option<&'a str>,
}

/// One supported key: its RocketMQ name, a one-line description, how to print the current value
/// and how to set it. A setter returns the reason a value is invalid, or an optional warning.
pub(crate) struct KeySpec<C> {
    pub key: &'static str,
    pub doc: &'static str,
    pub get: fn(&C) -> String,
    pub set: fn(&mut C, &str, &SetContext<'_>) -> Result<Option<String>, String>,
}

/// Where each supported key was set: key → (line, value as written).
pub(crate) type SetKeys = BTreeMap<&'static str, (usize, String)>;

/// Suffix of the warning for a RocketMQ key Apogee accepts but ignores.
pub const NOT_SUPPORTED_YET: &str = "is a RocketMQ setting Apogee does not support yet; ignored";

/// Applies `properties` to `config` through `specs`. Keys RocketMQ knows but Apogee does not
/// implement (`rocketmq_keys`) and unknown keys become warnings naming file and line.
pub(crate) fn apply<C>(
    specs: &[KeySpec<C>],
    rocketmq_keys: &[&str],
    config: &mut C,
    properties: &[Property],
    origin: &str,
    home: Option<&str>,
    warnings: &mut ConfigWarnings,
) -> Result<SetKeys, ConfigError> {
    let context = SetContext { home };
    let mut set_keys = SetKeys::new();
    for property in properties {
        let Some(spec) = specs.iter().find(|s| s.key == property.key) else {
            warnings.push(unsupported_warning(specs, rocketmq_keys, property, origin));
            continue;
        };
        if let Some((earlier_line, _)) = set_keys.get(spec.key) {
            warnings.push(format!(
                "{origin}:{}: key `{}` is set again (first at line {earlier_line}); the later \
                 value wins",
                property.line, spec.key
            ));
        }
        match (spec.set)(config, &property.value, &context) {
            Ok(None) => {}
            Ok(Some(warning)) => warnings.push(format!(
                "{origin}:{}: key `{}`: {warning}",
                property.line, spec.key
            )),
            Err(reason) => {
                return Err(ConfigError::InvalidValue {
                    path: origin.to_string(),
                    line: property.line,
                    key: spec.key.to_string(),
                    value: property.value.clone(),
                    reason,
                })
            }
        }
        set_keys.insert(spec.key, (property.line, property.value.clone()));
    }
    Ok(set_keys)
}

fn unsupported_warning<C>(
    specs: &[KeySpec<C>],
    rocketmq_keys: &[&str],
    property: &Property,
    origin: &str,
) -> String {
    let key = &property.key;
    if rocketmq_keys.contains(&key.as_str()) {
        return format!(
            "{origin}:{}: key `{key}` {NOT_SUPPORTED_YET}",
            property.line
        );
    }
    let suggestion = specs
        .iter()
        .map(|s| s.key)
        .chain(rocketmq_keys.iter().copied())
        .map(|candidate| {
            let distance = if candidate.eq_ignore_ascii_case(key) {
                0
            } else {
                edit_distance(&candidate.to_ascii_lowercase(), &key.to_ascii_lowercase())
            };
            (distance, candidate)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min();
    match suggestion {
        Some((_, candidate)) => format!(
            "{origin}:{}: unknown key `{key}` ignored (did you mean `{candidate}`?)",
            property.line
        ),
        None => format!("{origin}:{}: unknown key `{key}` ignored", property.line),
    }
}

/// Prints every supported key as `key=value` lines (the `-p` option of the binaries).
pub(crate) fn to_properties<C>(specs: &[KeySpec<C>], config: &C) -> String {
    let mut out = String::new();
    for spec in specs {
        out.push_str(spec.key);
        out.push('=');
        out.push_str(&escape_value(&(spec.get)(config)));
        out.push('\n');
    }
    out
}

/// Escapes a value so `parse_properties` reads it back unchanged.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}
