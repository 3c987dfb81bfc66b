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

use std::collections::HashMap;

/// The parameter placeholder in templates.
pub const WILDCARD: &str = "<*>";

/// Tokens of a message beyond this many are not looked at.
pub const MAX_TOKENS: usize = 32;
/// Longer tokens are cut (they are almost always parameters anyway).
const MAX_TOKEN_BYTES: usize = 64;

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
    /// Where it sits: its group's key.
    group: GroupKey,
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

/// The leaf a message's tokens lead to: (service, length, prefix tokens).
type GroupKey = (Box<str>, usize, Vec<Box<str>>);

/// Templates of many services (each its own tree), under one cap.
#[derive(Debug, Default)]
pub struct TemplateMiner {
    settings: DrainSettings,
    /// Per tree node, the distinct next tokens seen (the `max_children` rule): (service,
    /// length, prefix so far) → tokens. Forgotten whole when it has more nodes than
    /// `max_templates`: the rule then starts counting afresh.
    children: HashMap<GroupKey, Vec<Box<str>>>,
    groups: HashMap<GroupKey, Vec<TemplateId>>,
    templates: HashMap<TemplateId, Template>,
    next_id: TemplateId,
    clock: u64,
    evicted: u64,
}

fn is_param(token: &str) -> bool {
    token.bytes().any(|b| b.is_ascii_digit())
}

/// A message's tokens, parameters masked, at most `MAX_TOKENS`.
pub fn tokens(message: &str) -> Vec<&str> {
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

    /// The leaf for `tokens`: the length, then up to `prefix_tokens` tokens, each replaced by
    /// `<*>` when it is a parameter or its node already has `max_children` other children.
    fn group(&mut self, service: &str, tokens: &[&str]) -> GroupKey {
        let len = tokens.len();
        // Worst case `max_templates` nodes of `max_children` short tokens each.
        let bound = self.settings.max_templates.max(1);
        if self.children.len() > bound {
            self.children.clear();
        }
        let mut prefix: Vec<Box<str>> = Vec::new();
        for t in tokens.iter().take(self.settings.prefix_tokens) {
            let key = (service.into(), len, prefix.clone());
            let seen = self.children.entry(key).or_default();
            let step: Box<str> = if *t == WILDCARD {
                WILDCARD.into()
            } else if seen.iter().any(|s| &**s == *t) {
                (*t).into()
            } else if seen.len() < self.settings.max_children {
                seen.push((*t).into());
                (*t).into()
            } else {
                WILDCARD.into()
            };
            prefix.push(step);
        }
        (service.into(), len, prefix)
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
        let tree = if location.is_empty() {
            std::borrow::Cow::Borrowed(service)
        } else {
            std::borrow::Cow::Owned(format!("{service}\u{1f}{location}"))
        };
        let group = self.group(&tree, &toks);
        let best = self.groups.get(&group).and_then(|ids| {
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
                group: group.clone(),
                location: location.into(),
            },
        );
        self.groups.entry(group).or_default().push(id);
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
            if let Some(ids) = self.groups.get_mut(&t.group) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.groups.remove(&t.group);
                }
            }
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
}
