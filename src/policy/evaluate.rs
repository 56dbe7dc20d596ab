//! Deciding: which rule applies to a request and to each of its findings.
//!
//! Pure functions over the policy and the facts of one request; no I/O, no clock, so the same
//! request always gets the same answer and `policy test` exercises exactly what the proxy runs.

use crate::detect::{Category, Severity};
use crate::inspect::Provider;

use super::model::{glob_match, Action, Policy, ProviderName, Rule, Stage};

/// What is known about a request before its findings.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub host: &'a str,
    pub provider: Provider,
    pub model: Option<&'a str>,
    pub client: &'a str,
}

/// What is known about one finding.
#[derive(Debug, Clone, Copy)]
pub struct FindingFacts<'a> {
    pub detector: &'a str,
    pub category: Category,
    pub severity: Severity,
    pub location: &'a str,
}

/// The outcome of matching one rule (or the policy default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    /// What is done (a trial rule's action is `monitor`).
    pub action: Action,
    /// For a trial rule: what it would have done.
    pub would: Option<Action>,
    /// The rule's name; `None` for the policy default.
    pub rule: Option<String>,
    /// For `local`: the endpoint name.
    pub local: Option<String>,
    /// The rule's own message for the user.
    pub message: Option<String>,
}

impl Ruling {
    fn from_rule(rule: &Rule) -> Ruling {
        let (action, would) = match rule.stage {
            Stage::Enforce => (rule.action, None),
            Stage::Trial => (Action::Monitor, Some(rule.action)),
        };
        Ruling {
            action,
            would,
            rule: Some(rule.name.get_ref().clone()),
            local: rule.local.as_ref().map(|l| l.get_ref().clone()),
            message: rule.message.clone(),
        }
    }

    pub fn default_for(action: Action) -> Ruling {
        Ruling {
            action,
            would: None,
            rule: None,
            local: None,
            message: None,
        }
    }
}

fn any_glob(patterns: &[String], value: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| glob_match(p, value))
}

fn provider_matches(list: &[ProviderName], provider: Provider) -> bool {
    list.is_empty() || list.iter().any(|&p| Provider::from(p) == provider)
}

fn request_matches(rule: &Rule, request: &RequestFacts) -> bool {
    any_glob(&rule.destination, request.host)
        && provider_matches(&rule.provider, request.provider)
        && (rule.model.is_empty() || request.model.is_some_and(|m| any_glob(&rule.model, m)))
        && any_glob(&rule.client, request.client)
}

fn finding_matches(rule: &Rule, finding: &FindingFacts) -> bool {
    any_glob(&rule.detector, finding.detector)
        && (rule.category.is_empty() || rule.category.contains(&finding.category))
        && rule.severity.is_none_or(|min| finding.severity >= min)
        && any_glob(&rule.location, finding.location)
}

/// The first rule matching both the request and the finding, else the policy default.
pub fn for_finding(policy: &Policy, request: &RequestFacts, finding: &FindingFacts) -> Ruling {
    policy
        .rules
        .iter()
        .find(|rule| request_matches(rule, request) && finding_matches(rule, finding))
        .map(Ruling::from_rule)
        .unwrap_or_else(|| Ruling::default_for(policy.settings.default_action))
}

/// The first rule without finding conditions that matches the request, if any: it decides the
/// request even when nothing is found.
pub fn for_request(policy: &Policy, request: &RequestFacts) -> Option<Ruling> {
    policy
        .rules
        .iter()
        .find(|rule| rule.is_request_rule() && request_matches(rule, request))
        .map(Ruling::from_rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &str) -> Policy {
        toml::from_str(&format!("name = \"t\"\n{rules}")).unwrap()
    }

    const REQUEST: RequestFacts = RequestFacts {
        host: "api.anthropic.com",
        provider: Provider::Anthropic,
        model: Some("claude-sonnet-4-5"),
        client: "claude-code",
    };

    fn finding(detector: &str, severity: Severity) -> FindingFacts<'_> {
        FindingFacts {
            detector,
            category: if detector.starts_with("pii") {
                Category::Pii
            } else {
                Category::Secret
            },
            severity,
            location: "messages[0].content",
        }
    }

    #[test]
    fn the_first_matching_rule_wins_top_down() {
        let p = policy(
            r#"
            [[rule]]
            name = "keys-in-tests-are-fine"
            detector = ["secret.test_*"]
            action = "allow"
            [[rule]]
            name = "secrets"
            category = ["secret"]
            action = "redact"
            [[rule]]
            name = "critical"
            severity = "critical"
            action = "block"
            "#,
        );
        let r = for_finding(
            &p,
            &REQUEST,
            &finding("secret.test_key", Severity::Critical),
        );
        assert_eq!(
            (r.action, r.rule.as_deref()),
            (Action::Allow, Some("keys-in-tests-are-fine"))
        );
        let r = for_finding(&p, &REQUEST, &finding("secret.aws", Severity::Critical));
        assert_eq!(r.action, Action::Redact);
        let r = for_finding(&p, &REQUEST, &finding("pii.email", Severity::Critical));
        assert_eq!(r.action, Action::Block);
        let r = for_finding(&p, &REQUEST, &finding("pii.email", Severity::Low));
        assert_eq!((r.action, r.rule), (Action::Monitor, None));
    }

    #[test]
    fn request_conditions_scope_rules() {
        let p = policy(
            r#"
            [[rule]]
            name = "curl may send anything"
            client = ["curl"]
            action = "allow"
            [[rule]]
            name = "no gpt-3"
            model = ["gpt-3*"]
            action = "block"
            [[rule]]
            name = "secrets"
            category = ["secret"]
            provider = ["anthropic"]
            action = "block"
            "#,
        );
        let curl = RequestFacts {
            client: "curl",
            ..REQUEST
        };
        assert_eq!(
            for_finding(&p, &curl, &finding("secret.x", Severity::High)).action,
            Action::Allow
        );
        assert_eq!(for_request(&p, &curl).unwrap().action, Action::Allow);
        assert!(for_request(&p, &REQUEST).is_none());
        let old = RequestFacts {
            model: Some("gpt-3.5-turbo"),
            provider: Provider::OpenAi,
            ..REQUEST
        };
        assert_eq!(for_request(&p, &old).unwrap().action, Action::Block);
        let openai = RequestFacts {
            provider: Provider::OpenAi,
            ..REQUEST
        };
        assert_eq!(
            for_finding(&p, &openai, &finding("secret.x", Severity::High)).action,
            Action::Monitor
        );
    }

    #[test]
    fn a_trial_rule_monitors_and_records_what_it_would_do() {
        let p = policy(
            r#"
            [[rule]]
            name = "try blocking emails"
            detector = ["pii.email"]
            action = "block"
            stage = "trial"
            "#,
        );
        let r = for_finding(&p, &REQUEST, &finding("pii.email", Severity::Medium));
        assert_eq!((r.action, r.would), (Action::Monitor, Some(Action::Block)));
    }
}
