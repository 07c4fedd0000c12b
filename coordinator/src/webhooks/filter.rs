//! Which events a webhook gets: event kinds (exact) and clusters (`namespace/project/cluster`
//! patterns where `*` matches any run of characters and `?` one character in a segment).

use std::fmt;

/// A cluster pattern: three segments, each matched on its own.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterPattern {
    /// namespace, project, cluster.
    parts: [String; 3],
}

impl ClusterPattern {
    /// `namespace/project/cluster`, each a name or a glob (`*`, `?`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let [ns, project, cluster] = parts.as_slice() else {
            return Err(format!(
                "{s:?} is not a cluster pattern: write namespace/project/cluster, each a name or a \
                 glob with * and ?, e.g. production/*/* or staging/bluebird/billing"
            ));
        };
        for p in [ns, project, cluster] {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "{s:?} is not a cluster pattern: every segment needs a name or `*`, without \
                     whitespace"
                ));
            }
        }
        Ok(Self {
            parts: [
                (*ns).to_owned(),
                (*project).to_owned(),
                (*cluster).to_owned(),
            ],
        })
    }

    /// Whether the cluster matches.
    pub fn matches(&self, namespace: &str, project: &str, cluster: &str) -> bool {
        glob(&self.parts[0], namespace)
            && glob(&self.parts[1], project)
            && glob(&self.parts[2], cluster)
    }
}

impl fmt::Debug for ClusterPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.parts.join("/"))
    }
}

/// `*` any run (also empty), `?` any one character, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A webhook's event filter; the default lets everything through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event kinds (`failover`, …); `None`: all.
    kinds: Option<Vec<String>>,
    /// Cluster patterns; `None`: all.
    clusters: Option<Vec<ClusterPattern>>,
}

impl Filter {
    /// A filter of these kinds and clusters (`None`: all).
    pub fn new(kinds: Option<Vec<String>>, clusters: Option<Vec<ClusterPattern>>) -> Self {
        Self { kinds, clusters }
    }

    /// Whether an event of `kind` in the cluster passes.
    pub fn accepts(&self, kind: &str, namespace: &str, project: &str, cluster: &str) -> bool {
        let kind_ok = self
            .kinds
            .as_ref()
            .is_none_or(|ks| ks.iter().any(|k| k == kind));
        let cluster_ok = self
            .clusters
            .as_ref()
            .is_none_or(|cs| cs.iter().any(|c| c.matches(namespace, project, cluster)));
        kind_ok && cluster_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("prod", "prod", true),
            ("prod", "prod2", false),
            ("prod-*", "prod-eu", true),
            ("prod-*", "staging-eu", false),
            ("*-eu", "prod-eu", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxc", false),
            ("données-*", "données-1", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn filters_by_kind_and_cluster() {
        let all = Filter::default();
        assert!(all.accepts("fenced", "a", "b", "c"));
        let f = Filter::new(
            Some(vec!["failover".into(), "switchover".into()]),
            Some(vec![
                ClusterPattern::parse("prod/*/*").expect("pattern"),
                ClusterPattern::parse("staging/bluebird/billing").expect("pattern"),
            ]),
        );
        assert!(f.accepts("failover", "prod", "x", "y"));
        assert!(!f.accepts("fenced", "prod", "x", "y"), "kind not asked for");
        assert!(f.accepts("switchover", "staging", "bluebird", "billing"));
        assert!(!f.accepts("switchover", "staging", "bluebird", "other"));
        assert!(
            !f.accepts("failover", "production", "x", "y"),
            "exact segment"
        );
    }

    #[test]
    fn patterns_need_three_segments() {
        for bad in ["prod", "prod/*", "a/b/c/d", "a//c", "a/ b/c", ""] {
            let e = ClusterPattern::parse(bad).expect_err(bad);
            assert!(
                e.contains("namespace/project/cluster") || e.contains("segment"),
                "{e}"
            );
        }
    }
}
