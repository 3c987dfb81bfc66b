//! Log templates mined online with Drain (He, Zhu, Zheng, Lyu: "Drain: An Online Log Parsing
//! Approach with Fixed Depth Tree", ICWS 2017): a message's tokens find their group through a
//! tree of fixed depth (its length, then its first tokens), and join the most similar template
//! of that group when at least `similarity` of their tokens agree, turning the positions that
//! differ into `<*>`; otherwise they start a new template.
//!
//! Implemented here rather than taken from a crate: the Rust ports are young or unmaintained,
//! and detection needs what they do not give together: a hard cap on templates across all
//! services with least-recently-seen eviction (memory stays bounded whatever is logged), stable
//! ids across merges, and bounded tokens per message.
//!
//! Tokens are split on whitespace; a token holding a digit is a parameter from the start
//! (`<*>`), as Drain's preprocessing masks numbers, ids and addresses.

use std::hash::BuildHasher;

/// The parameter placeholder in templates.
pub const WILDCARD: &str = "<*>";

/// Tokens of a message beyond this many are not looked at.
pub const MAX_TOKENS: usize = 32;
/// Longer tokens are cut (they are almost always parameters anyway).
const MAX_TOKEN_BYTES: usize = 64;
/// Prefix tokens of the tree at most, whatever the settings say.
const MAX_PREFIX_TOKENS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainSettings {
    /// Tokens of the prefix tree below the length level (Drain's depth − 2).
    pub prefix_tokens: usize,
    /// Fraction of equal tokens for a message to join a template.
    pub similarity: f64,
    /// Children of a tree node before new tokens share one `<*>` child.
    pub max_children: usize,
    /// Templates kept across every service; the least recently seen goes first.
    pub max_templates: usize,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            prefix_tokens: 2,
            similarity: 0.4,
            max_children: 100,
            max_templates: 5000,
        }
    }
}

/// A template's stable id (kept through merges; never reused).
pub type TemplateId = u64;

#[derive(Debug, Clone)]
pub struct Template {
    pub id: TemplateId,
    pub tokens: Vec<Box<str>>,
    /// Messages matched, in all.
    pub count: u64,
    /// A counter value of when it was last matched (for eviction).
    last_seen: u64,
    /// Where it sits: its group's path, and that path's hash.
    group: (u64, Path),
    /// The code that writes it, when the records say (`logger#line`): empty if not.
    pub location: Box<str>,
}

impl Template {
    /// Its tokens, after the code location that writes it when there is one.
    pub fn text(&self) -> String {
        if self.location.is_empty() {
            self.tokens.join(" ")
        } else {
            format!("{} {}", self.location, self.tokens.join(" "))
        }
    }
}

/// What adding a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    pub id: TemplateId,
    /// The template did not exist before this message.
    pub new: bool,
}

/// A node of the trees: a service's, for messages written at one location (empty: unknown),
/// of one length, whose first tokens led here (each a token, or `<*>`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Path {
    service: Box<str>,
    location: Box<str>,
    len: usize,
    prefix: Vec<Box<str>>,
}

/// A node's place, borrowed from the message being matched.
#[derive(Hash)]
struct At<'a> {
    service: &'a str,
    location: &'a str,
    len: usize,
    prefix: &'a [&'a str],
}

impl At<'_> {
    fn is(&self, p: &Path) -> bool {
        p.len == self.len
            && *p.service == *self.service
            && *p.location == *self.location
            && p.prefix.len() == self.prefix.len()
            && p.prefix.iter().zip(self.prefix).all(|(a, b)| **a == **b)
    }

    fn path(&self) -> Path {
        Path {
            service: self.service.into(),
            location: self.location.into(),
            len: self.len,
            prefix: self.prefix.iter().map(|t| (*t).into()).collect(),
        }
    }
}

/// Values by tree node, found by the node's hash and compared in place: a message finds its
/// way without building a key (nothing allocated but for a node seen the first time).
#[derive(Debug)]
struct ByPath<V> {
    buckets: foldhash::HashMap<u64, Vec<(Path, V)>>,
    len: usize,
}

impl<V> Default for ByPath<V> {
    fn default() -> Self {
        Self {
            buckets: Default::default(),
            len: 0,
        }
    }
}

impl<V: Default> ByPath<V> {
    fn get(&self, h: u64, at: &At<'_>) -> Option<&V> {
        self.buckets
            .get(&h)?
            .iter()
            .find(|(p, _)| at.is(p))
            .map(|(_, v)| v)
    }

    fn get_or_default(&mut self, h: u64, at: &At<'_>) -> &mut V {
        let bucket = self.buckets.entry(h).or_default();
        let i = match bucket.iter().position(|(p, _)| at.is(p)) {
            Some(i) => i,
            None => {
                bucket.push((at.path(), V::default()));
                self.len += 1;
                bucket.len() - 1
            }
        };
        &mut bucket[i].1
    }

    /// Applies `f` to the value at `path`, and removes it if `f` says so.
    fn update(&mut self, h: u64, path: &Path, f: impl FnOnce(&mut V) -> bool) {
        let Some(bucket) = self.buckets.get_mut(&h) else {
            return;
        };
        let Some(i) = bucket.iter().position(|(p, _)| p == path) else {
            return;
        };
        if f(&mut bucket[i].1) {
            bucket.swap_remove(i);
            self.len -= 1;
            if bucket.is_empty() {
                self.buckets.remove(&h);
            }
        }
    }

    fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
    }
}

/// Templates of many services (each its own trees), under one cap.
#[derive(Debug, Default)]
pub struct TemplateMiner {
    settings: DrainSettings,
    /// Per tree node, the distinct next tokens seen (the `max_children` rule). Forgotten whole
    /// when it has more nodes than `max_templates`: the rule then starts counting afresh.
    children: ByPath<Vec<Box<str>>>,
    /// Per leaf, its templates.
    groups: ByPath<Vec<TemplateId>>,
    templates: foldhash::HashMap<TemplateId, Template>,
    /// Hashes tree nodes (seeded at random per process, as the window's lookups are).
    hasher: foldhash::fast::RandomState,
    next_id: TemplateId,
    clock: u64,
    evicted: u64,
}

fn is_param(token: &str) -> bool {
    token.bytes().any(|b| b.is_ascii_digit())
}

/// A message's tokens, parameters masked, at most `MAX_TOKENS`.
pub fn tokens(message: &str) -> Vec<&str> {
    if message.is_ascii() {
        tokens_ascii(message)
    } else {
        tokens_general(message)
    }
}

/// `tokens` of any text: split on Unicode whitespace.
fn tokens_general(message: &str) -> Vec<&str> {
    message
        .split_whitespace()
        .take(MAX_TOKENS)
        .map(|t| {
            if is_param(t) {
                WILDCARD
            } else if t.len() > MAX_TOKEN_BYTES {
                let mut end = MAX_TOKEN_BYTES;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                &t[..end]
            } else {
                t
            }
        })
        .collect()
}

/// `tokens` of ASCII text, in one pass over its bytes (most log lines): the same tokens as
/// `tokens_general`, whose Unicode whitespace within ASCII is these six bytes.
fn tokens_ascii(message: &str) -> Vec<&str> {
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let b = message.as_bytes();
    let mut out = Vec::with_capacity(MAX_TOKENS.min(b.len() / 2 + 1));
    let mut i = 0;
    while out.len() < MAX_TOKENS {
        while i < b.len() && space(b[i]) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        let mut digit = false;
        while i < b.len() && !space(b[i]) {
            digit |= b[i].is_ascii_digit();
            i += 1;
        }
        out.push(if digit {
            WILDCARD
        } else {
            // ASCII: every byte is a character boundary.
            message
                .get(start..i.min(start + MAX_TOKEN_BYTES))
                .unwrap_or_default()
        });
    }
    out
}

/// Share of positions where the template's token equals the message's, and how many `<*>` the
/// template has. A `<*>` facing a masked token (a parameter in both) counts as equal, as
/// Drain's masked values do; facing a word it matches but is no evidence.
fn similarity(template: &[Box<str>], message: &[&str]) -> (f64, usize) {
    let mut same = 0;
    let mut params = 0;
    for (t, m) in template.iter().zip(message) {
        if &**t == *m {
            same += 1;
        } else if &**t == WILDCARD {
            params += 1;
        }
    }
    let n = template.len().max(1);
    (same as f64 / n as f64, params)
}

impl TemplateMiner {
    pub fn new(settings: DrainSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Templates held now.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Templates evicted to stay under `max_templates`, in all.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn get(&self, id: TemplateId) -> Option<&Template> {
        self.templates.get(&id)
    }

    /// The leaf for `tokens`: the length, then up to `prefix_tokens` tokens (at most
    /// `MAX_PREFIX_TOKENS`), each replaced by `<*>` when it is a parameter or its node already
    /// has `max_children` other children. The steps are written into `steps`; returns how many.
    fn group<'a>(
        &mut self,
        service: &str,
        location: &str,
        tokens: &[&'a str],
        steps: &mut [&'a str; MAX_PREFIX_TOKENS],
    ) -> usize {
        let len = tokens.len();
        let bound = self.settings.max_templates.max(1);
        if self.children.len > bound {
            self.children.clear();
        }
        let depth = self.settings.prefix_tokens.min(MAX_PREFIX_TOKENS);
        let mut n = 0;
        for t in tokens.iter().take(depth) {
            let at = At {
                service,
                location,
                len,
                prefix: &steps[..n],
            };
            let h = self.hasher.hash_one(&at);
            let max_children = self.settings.max_children;
            let seen = self.children.get_or_default(h, &at);
            steps[n] = if *t == WILDCARD {
                WILDCARD
            } else if seen.iter().any(|s| &**s == *t) {
                t
            } else if seen.len() < max_children {
                seen.push((*t).into());
                t
            } else {
                WILDCARD
            };
            n += 1;
        }
        n
    }

    /// Adds one message of `service`; returns the template it now belongs to.
    pub fn add(&mut self, service: &str, message: &str) -> Matched {
        self.add_at(service, "", message)
    }

    /// Adds one message of `service` written at `location` (a logger and line, or empty when
    /// unknown): messages of different locations never share a template, however alike (two
    /// lines of code that log the same words are two code paths).
    pub fn add_at(&mut self, service: &str, location: &str, message: &str) -> Matched {
        self.clock += 1;
        let toks = tokens(message);
        let mut steps = [""; MAX_PREFIX_TOKENS];
        let n = self.group(service, location, &toks, &mut steps);
        let at = At {
            service,
            location,
            len: toks.len(),
            prefix: &steps[..n],
        };
        let h = self.hasher.hash_one(&at);
        let best = self.groups.get(h, &at).and_then(|ids| {
            ids.iter()
                .filter_map(|id| self.templates.get(id))
                .map(|t| {
                    let (sim, params) = similarity(&t.tokens, &toks);
                    (t.id, sim, params)
                })
                // Most similar; on a tie, the one with more parameters (Drain's rule).
                .max_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)))
        });
        let clock = self.clock;
        if let Some((id, sim, _)) = best {
            if sim >= self.settings.similarity || toks.is_empty() {
                if let Some(t) = self.templates.get_mut(&id) {
                    for (slot, m) in t.tokens.iter_mut().zip(&toks) {
                        if &**slot != *m && &**slot != WILDCARD {
                            *slot = WILDCARD.into();
                        }
                    }
                    t.count += 1;
                    t.last_seen = clock;
                }
                return Matched { id, new: false };
            }
        }
        if self.templates.len() >= self.settings.max_templates.max(1) {
            self.evict_least_recent();
        }
        let id = self.next_id;
        self.next_id += 1;
        self.templates.insert(
            id,
            Template {
                id,
                tokens: toks.iter().map(|t| (*t).into()).collect(),
                count: 1,
                last_seen: clock,
                group: (h, at.path()),
                location: location.into(),
            },
        );
        self.groups.get_or_default(h, &at).push(id);
        Matched { id, new: true }
    }

    fn evict_least_recent(&mut self) {
        let Some(id) = self
            .templates
            .values()
            .min_by_key(|t| t.last_seen)
            .map(|t| t.id)
        else {
            return;
        };
        if let Some(t) = self.templates.remove(&id) {
            let (h, path) = &t.group;
            self.groups.update(*h, path, |ids| {
                ids.retain(|i| *i != id);
                ids.is_empty()
            });
            self.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &TemplateMiner, id: TemplateId) -> String {
        m.get(id).map(Template::text).unwrap_or_default()
    }

    #[test]
    fn the_same_statement_with_other_values_is_one_template() {
        let mut m = TemplateMiner::new(DrainSettings::default());
        let a = m.add("food", "Connection refused to db-1:5432 after 3 retries");
        assert!(a.new);
        let b = m.add("food", "Connection refused to db-2:5433 after 5 retries");
        assert_eq!((b.id, b.new), (a.id, false));
        assert_eq!(
            text(&m, a.id),
            "Connection refused to <*> after <*> retries"
        );
        // Words that differ at the same place become parameters too, the id stays.
        let c = m.add("food", "Connection refused to cache after 5 retries");
        assert_eq!(c.id, a.id);
        assert_eq!(
            text(&m, a.id),
            "Connection refused to <*> after <*> retries"
        );
        assert_eq!(m.get(a.id).map(|t| t.count), Some(3));
        // Another statement is another template, once.
        let d = m.add("food", "Session opened for alice");
        assert!(d.new && d.id != a.id);
        assert!(!m.add("food", "Session opened for bob").new);
        assert_eq!(text(&m, d.id), "Session opened for <*>");
        // A word among the first tokens leads elsewhere in the tree (Drain's fixed depth).
        assert!(m.add("food", "alice opened a session").new);
        // The same text in another service is that service's own template.
        assert!(m.add("order", "Session opened for alice").new);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn templates_stay_under_the_cap_and_the_least_recently_seen_go_first() {
        let mut m = TemplateMiner::new(DrainSettings {
            max_templates: 3,
            ..DrainSettings::default()
        });
        let keep = m.add("s", "heartbeat ok").id;
        for w in ["alpha", "beta", "gamma", "delta", "epsilon"] {
            m.add("s", &format!("{w} {w} {w} event happened"));
            m.add("s", "heartbeat ok");
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.evicted(), 3);
        assert!(m.get(keep).is_some(), "the one seen all along is kept");
        // A flood of distinct one-off messages cannot grow it either.
        for i in 0..10_000 {
            m.add(&format!("svc-{}", i % 7), &format!("w{} x", i));
            m.add("s", &format!("{} {} {}", "zz".repeat(i % 50 + 1), i, "y"));
        }
        assert!(m.len() <= 3);
    }

    #[test]
    fn odd_messages_are_handled() {
        let mut m = TemplateMiner::new(DrainSettings::default());
        let e = m.add("s", "");
        assert!(!m.add("s", "   ").new, "empty messages share one template");
        assert_eq!(text(&m, e.id), "");
        let long = "word ".repeat(10_000);
        let l = m.add("s", &long);
        assert_eq!(m.get(l.id).map(|t| t.tokens.len()), Some(MAX_TOKENS));
        let wide = "é".repeat(1000);
        let w = m.add("s", &wide);
        assert!(m.get(w.id).is_some_and(|t| t.tokens[0].len() <= 64));
        // Many distinct first tokens share a `<*>` branch past max_children.
        let mut m = TemplateMiner::new(DrainSettings {
            max_children: 2,
            ..DrainSettings::default()
        });
        for w in ["a", "b", "c", "d"] {
            m.add("s", &format!("{w} started the job"));
        }
        assert!(m.len() <= 3, "{}", m.len());
    }

    #[test]
    fn ascii_lines_are_split_as_any_text_is() {
        let long = "x".repeat(100);
        let mut lines = vec![
            String::new(),
            "   ".into(),
            "GET /cart served in 12 ms".into(),
            "a\tb\nc\x0bd\x0ce\rf  g".into(),
            format!("token {long} after"),
            " lead and trail ".into(),
            (0..40)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" "),
            (0..40).map(|_| "w").collect::<Vec<_>>().join(" "),
        ];
        // Random lines over letters, digits and the six whitespace bytes.
        let alphabet = b"ab1 \t\n\x0b\x0c\rZ-:";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let n = (x % 50) as usize;
            let line: String = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize] as char
                })
                .collect();
            lines.push(line);
        }
        for line in &lines {
            assert!(line.is_ascii());
            assert_eq!(tokens_ascii(line), tokens_general(line), "{line:?}");
        }
        // Beyond ASCII the general split decides (a no-break space separates).
        assert_eq!(tokens("a\u{a0}b"), vec!["a", "b"]);
    }
}
