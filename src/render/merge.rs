//! Deep merge of native Traefik overrides: maps merge key by key, scalars and lists replace.

use serde_json::Value;

/// Merges `overlay` into `base`.
pub fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_scalars_and_lists_replace() {
        let mut base =
            json!({"log": {"level": "INFO", "format": "json"}, "list": [1, 2], "keep": 1});
        deep_merge(
            &mut base,
            &json!({"log": {"level": "DEBUG"}, "list": [3], "new": {"a": 1}}),
        );
        assert_eq!(
            base,
            json!({"log": {"level": "DEBUG", "format": "json"}, "list": [3], "keep": 1, "new": {"a": 1}})
        );
    }
}
