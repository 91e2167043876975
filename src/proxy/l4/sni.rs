//! Server name → route: exact names first, then `*.suffix` wildcards (one or more labels in
//! front of the suffix, as for HTTP routes), longest suffix first.

use std::collections::HashMap;

pub struct SniTable<T> {
    exact: HashMap<String, T>,
    /// (`.suffix`, value), longest suffix first.
    wildcards: Vec<(String, T)>,
}

impl<T: Clone> SniTable<T> {
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, T)>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcards = Vec::new();
        for (name, value) in entries {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix('*') {
                Some(suffix) => wildcards.push((suffix.to_string(), value)),
                None => {
                    exact.entry(name).or_insert(value);
                }
            }
        }
        wildcards.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        Self { exact, wildcards }
    }

    /// The route for a lowercased server name.
    pub fn find(&self, name: &str) -> Option<&T> {
        self.exact.get(name).or_else(|| {
            self.wildcards
                .iter()
                .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
                .map(|(_, v)| v)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::SniTable;

    #[test]
    fn exact_beats_wildcard_and_longer_suffix_wins() {
        let t = SniTable::new([
            ("*.example.com", 1),
            ("mqtt.example.com", 2),
            ("*.eu.example.com", 3),
        ]);
        assert_eq!(t.find("mqtt.example.com"), Some(&2));
        assert_eq!(t.find("a.example.com"), Some(&1));
        assert_eq!(t.find("a.b.eu.example.com"), Some(&3));
        assert_eq!(t.find("example.com"), None);
        assert_eq!(t.find("other.org"), None);
    }
}
