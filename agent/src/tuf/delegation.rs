//! Which roles may sign a target path, and the search of the delegation
//! tree (specification §5.6.7): preorder depth-first from `targets`, in
//! the order each role lists its delegations; a terminating role that
//! matches ends the search below it and stops its siblings; each role is
//! visited once and at most `max_delegations` are.

use std::collections::BTreeSet;

use sha2::Digest;

use super::metadata::{DelegatedRole, Delegations, TargetFile, Targets, ROOT, TARGETS};
use super::TufError;

/// One element of a segment pattern.
enum Token {
    Star,
    Any,
    Char(char),
    /// `[...]`: members (single characters or `a-z` ranges), negated.
    Class(Vec<(char, char)>, bool),
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star => true,
            Token::Any => true,
            Token::Char(p) => *p == c,
            Token::Class(members, negate) => {
                members.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negate
            }
        }
    }
}

/// Shell-style glob tokens: `*` (any run), `?` (one character), `[abc]`,
/// `[a-z]`, `[!abc]` (a `]` first in a class is a member; an unterminated
/// `[` is literal).
fn tokens(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '[' => {
                let mut j = i + 1;
                let negate = p.get(j) == Some(&'!');
                if negate {
                    j += 1;
                }
                let start = j;
                // The first member may be `]`.
                match p[start..].iter().skip(1).position(|&c| c == ']') {
                    Some(k) if start < p.len() => {
                        let end = start + 1 + k;
                        let body = &p[start..end];
                        let mut members = Vec::new();
                        let mut m = 0;
                        while m < body.len() {
                            if m + 2 < body.len() && body[m + 1] == '-' {
                                members.push((body[m], body[m + 2]));
                                m += 3;
                            } else {
                                members.push((body[m], body[m]));
                                m += 1;
                            }
                        }
                        out.push(Token::Class(members, negate));
                        i = end;
                    }
                    _ => out.push(Token::Char('[')),
                }
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    out
}

/// Whether `text` matches the glob `pattern` (one segment), in
/// O(len(pattern) × len(text)): on a mismatch only the last `*` backtracks.
fn segment_matches(pattern: &str, text: &str) -> bool {
    let pat = tokens(pattern);
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(tok) if tok.matches(text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|tok| matches!(tok, Token::Star))
}

/// Whether target `path` matches delegation `pattern`: the same number of
/// `/`-separated segments, each matching its glob (`*` never crosses `/`).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pats: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    pats.len() == parts.len() && pats.iter().zip(&parts).all(|(p, t)| segment_matches(p, t))
}

impl DelegatedRole {
    /// Whether this role may sign `target_path`.
    pub fn is_delegated_path(&self, target_path: &str) -> bool {
        if let Some(paths) = &self.paths {
            return paths.iter().any(|p| path_matches(p, target_path));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let digest = hex::encode(sha2::Sha256::digest(target_path.as_bytes()));
            return prefixes.iter().any(|p| digest.starts_with(p.as_str()));
        }
        false
    }
}

impl Delegations {
    /// The roles that may sign `target_path`, in order, each with whether
    /// it is terminating.
    pub fn roles_for_target(&self, target_path: &str) -> Vec<(String, bool)> {
        if let Some(s) = &self.succinct_roles {
            return vec![(s.role_for(target_path), true)];
        }
        self.roles
            .iter()
            .flatten()
            .filter(|r| r.is_delegated_path(target_path))
            .map(|r| (r.name.clone(), r.terminating))
            .collect()
    }
}

/// Loads role `name` as delegated by `parent`, through the trusted set.
pub trait Loader {
    fn load(&mut self, name: &str, parent: &str) -> Result<Targets, TufError>;
}

/// The target file for `target_path`, searching the tree from `targets`;
/// `Ok(None)` when no role visited lists it.
pub fn find(
    loader: &mut dyn Loader,
    target_path: &str,
    max_delegations: usize,
) -> Result<Option<TargetFile>, TufError> {
    let mut stack = vec![(TARGETS.to_string(), ROOT.to_string())];
    let mut visited = BTreeSet::new();
    while visited.len() <= max_delegations {
        let Some((name, parent)) = stack.pop() else {
            break;
        };
        if visited.contains(&name) {
            continue;
        }
        let targets = loader.load(&name, &parent)?;
        if let Some(t) = targets.targets.get(target_path) {
            return Ok(Some(t.clone()));
        }
        visited.insert(name.clone());
        let Some(d) = &targets.delegations else {
            continue;
        };
        let mut children = Vec::new();
        for (child, terminating) in d.roles_for_target(target_path) {
            children.push((child, name.clone()));
            if terminating {
                stack.clear();
                break;
            }
        }
        stack.extend(children.into_iter().rev());
    }
    if !stack.is_empty() {
        tracing::warn!(
            target_path,
            max_delegations,
            "TUF: stopped after the maximum number of delegations"
        );
    }
    Ok(None)
}

/// Loads the roles of the tree from `targets`, preorder, until `role` is
/// loaded (every delegation is followed, whatever its paths); `Ok(None)`
/// when it is not reached within `max_delegations` roles.
pub fn reach(
    loader: &mut dyn Loader,
    role: &str,
    max_delegations: usize,
) -> Result<Option<Targets>, TufError> {
    let mut stack = vec![(TARGETS.to_string(), ROOT.to_string())];
    let mut visited = BTreeSet::new();
    while visited.len() <= max_delegations {
        let Some((name, parent)) = stack.pop() else {
            break;
        };
        if !visited.insert(name.clone()) {
            continue;
        }
        let targets = loader.load(&name, &parent)?;
        if name == role {
            return Ok(Some(targets));
        }
        let Some(d) = &targets.delegations else {
            continue;
        };
        if let Some(s) = &d.succinct_roles {
            if s.is_bin(role) {
                stack.push((role.to_string(), name.clone()));
            }
            continue;
        }
        let children: Vec<_> = d
            .roles
            .iter()
            .flatten()
            .map(|r| (r.name.clone(), name.clone()))
            .collect();
        stack.extend(children.into_iter().rev());
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*", "file.txt", true),
            ("*", "dir/file.txt", false),
            ("dir/*", "dir/file.txt", true),
            ("dir/*", "dir/sub/file.txt", false),
            ("*/*", "dir/file.txt", true),
            ("dir/*.tnd", "dir/os-1.tnd", true),
            ("dir/*.tnd", "dir/os-1.tar", false),
            ("f?le", "file", true),
            ("f?le", "fle", false),
            ("[ab]c", "bc", true),
            ("[!ab]c", "bc", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[x", "[x", true),
            ("exact/path", "exact/path", true),
            ("exact/path", "exact/path2", false),
            ("", "", true),
            ("*", "", true),
            ("[]x]", "]", true),
            ("[]x]", "x", true),
            ("[!]]", "a", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("*.tnd", ".tnd", true),
        ];
        for (pat, path, want) in cases {
            assert_eq!(path_matches(pat, path), want, "{pat} vs {path}");
        }
    }

    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        let pattern = "*a".repeat(40) + "b";
        let text = "a".repeat(5000);
        assert!(!path_matches(&pattern, &text));
    }
}
