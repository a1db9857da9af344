//! String patterns of search clauses: `*` matches any run of characters, `?` exactly one,
//! and `\*`, `\?`, `\\` stand for the characters themselves.

use std::cmp::Ordering;

/// One piece of a pattern.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PatternToken {
    /// This exact character.
    Literal(char),
    /// `?`: any one character.
    AnyChar,
    /// `*`: any run of characters, the empty one included.
    AnyRun,
}

/// A parsed string pattern.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Pattern {
    tokens: Vec<PatternToken>,
}

impl Pattern {
    /// Parses a clause's string value; `None` when a backslash is followed by anything
    /// but `*`, `?` or `\`, or ends the text.
    pub fn parse(text: &str) -> Option<Self> {
        let mut tokens = Vec::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => PatternToken::AnyRun,
                '?' => PatternToken::AnyChar,
                '\\' => match chars.next()? {
                    escaped @ ('*' | '?' | '\\') => PatternToken::Literal(escaped),
                    _ => return None,
                },
                other => PatternToken::Literal(other),
            });
        }
        Some(Pattern { tokens })
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> &[PatternToken] {
        &self.tokens
    }

    /// True when the pattern has a `*` or `?`.
    pub fn has_wildcards(&self) -> bool {
        self.tokens
            .iter()
            .any(|token| !matches!(token, PatternToken::Literal(_)))
    }

    /// The text a pattern without wildcards stands for; `None` when it has wildcards.
    pub fn literal(&self) -> Option<String> {
        self.tokens
            .iter()
            .map(|token| match token {
                PatternToken::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// True when `text` matches the whole pattern.
    ///
    /// Greedy matching that returns to the last `*` on a mismatch: at most
    /// (pattern length x text length) steps, no recursion, whatever the input.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let tokens = &self.tokens;
        let (mut t, mut p) = (0usize, 0usize);
        // The position after the last `*` seen, and the text position it was tried at.
        let mut retry: Option<(usize, usize)> = None;
        while t < text.len() {
            match tokens.get(p) {
                Some(PatternToken::AnyRun) => {
                    p += 1;
                    retry = Some((p, t));
                }
                Some(PatternToken::AnyChar) => {
                    p += 1;
                    t += 1;
                }
                Some(PatternToken::Literal(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match retry {
                    Some((after_star, tried)) => {
                        p = after_star;
                        t = tried + 1;
                        retry = Some((after_star, tried + 1));
                    }
                    None => return false,
                },
            }
        }
        tokens[p..]
            .iter()
            .all(|token| matches!(token, PatternToken::AnyRun))
    }

    /// Compares `text` with the pattern's literal text (for ordering clauses, which take
    /// no wildcards): `None` when the pattern has wildcards.
    pub fn compare(&self, text: &str) -> Option<Ordering> {
        self.literal().map(|literal| text.cmp(literal.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Pattern::parse(pattern)
            .expect("valid pattern")
            .matches(text)
    }

    #[test]
    fn wildcards_match() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abcd"));
        assert!(!matches("abc", "ab"));
        assert!(matches("a*", "a"));
        assert!(matches("a*", "abcdef"));
        assert!(matches("*c", "abc"));
        assert!(matches("*", ""));
        assert!(!matches("?", ""));
        assert!(matches("a?c", "abc"));
        assert!(matches("a?c", "aéc"), "? is one character, not one byte");
        assert!(!matches("a?c", "ac"));
        assert!(matches("a*b*c", "aXXbYYbZc"));
        assert!(!matches("a*b*c", "aXXbYYbZ"));
        assert!(matches("*a*a*a*", "banana and a"));
        assert!(matches("**", "x"));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
    }

    #[test]
    fn escapes_stand_for_themselves() {
        assert!(matches(r"a\*", "a*"));
        assert!(!matches(r"a\*", "ab"));
        assert!(matches(r"\?", "?"));
        assert!(!matches(r"\?", "x"));
        assert!(matches(r"a\\b", r"a\b"));
        let pattern = Pattern::parse(r"x\*\?\\").expect("valid");
        assert!(!pattern.has_wildcards());
        assert_eq!(pattern.literal().as_deref(), Some(r"x*?\"));
    }

    #[test]
    fn bad_escapes_are_refused() {
        assert_eq!(Pattern::parse(r"\n"), None);
        assert_eq!(Pattern::parse(r"abc\"), None);
        assert_eq!(Pattern::parse(r"\a"), None);
    }

    #[test]
    fn literal_comparison() {
        let pattern = Pattern::parse("m").expect("valid");
        assert_eq!(pattern.compare("a"), Some(Ordering::Less));
        assert_eq!(pattern.compare("z"), Some(Ordering::Greater));
        assert_eq!(Pattern::parse("m*").expect("valid").compare("m"), None);
    }

    #[test]
    fn worst_case_stays_bounded() {
        let text = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(100));
        assert!(!matches(&pattern, &text));
    }
}
