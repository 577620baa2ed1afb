//! The simulated AWF deployment: agents (framework, provider, model, latency, failure rate,
//! token and price figures, fallback) and the workflows built from them.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub id: &'static str,
    pub framework: &'static str,
    pub provider: &'static str,
    pub model: &'static str,
    /// Median invocation latency.
    pub latency_ms: f64,
    /// Probability that one invocation fails on its own (rate limits, tool errors).
    pub failure_rate: f64,
    /// Typical token counts of one invocation.
    pub input_tokens: f64,
    pub output_tokens: f64,
    /// USD per million tokens.
    pub price_in: f64,
    pub price_out: f64,
    /// The agent AWF falls back to after the retries of a step are exhausted.
    pub fallback: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Step {
    pub id: &'static str,
    pub agent: &'static str,
    /// Retries on the same agent before falling back.
    pub retries: u32,
    /// Default step timeout.
    pub timeout_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    pub id: &'static str,
    /// Relative share of new executions.
    pub weight: f64,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub agents: Vec<Agent>,
    pub workflows: Vec<Workflow>,
}

#[allow(clippy::too_many_arguments)]
const fn agent(
    id: &'static str,
    framework: &'static str,
    provider: &'static str,
    model: &'static str,
    latency_ms: f64,
    failure_rate: f64,
    tokens: (f64, f64),
    prices: (f64, f64),
    fallback: Option<&'static str>,
) -> Agent {
    Agent {
        id,
        framework,
        provider,
        model,
        latency_ms,
        failure_rate,
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        price_in: prices.0,
        price_out: prices.1,
        fallback,
    }
}

const fn step(id: &'static str, agent: &'static str, timeout_ms: f64) -> Step {
    Step {
        id,
        agent,
        retries: 2,
        timeout_ms,
    }
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            agents: vec![
                agent(
                    "planner",
                    "langgraph",
                    "anthropic",
                    "claude-sonnet-4",
                    1200.0,
                    0.01,
                    (1500.0, 400.0),
                    (3.0, 15.0),
                    Some("planner-lite"),
                ),
                agent(
                    "planner-lite",
                    "langgraph",
                    "openai",
                    "gpt-4o-mini",
                    600.0,
                    0.01,
                    (1500.0, 300.0),
                    (0.15, 0.6),
                    None,
                ),
                agent(
                    "researcher",
                    "crewai",
                    "openai",
                    "gpt-4o",
                    2500.0,
                    0.03,
                    (4000.0, 800.0),
                    (2.5, 10.0),
                    Some("researcher-backup"),
                ),
                agent(
                    "researcher-backup",
                    "crewai",
                    "mistral",
                    "mistral-large",
                    2000.0,
                    0.02,
                    (4000.0, 700.0),
                    (2.0, 6.0),
                    None,
                ),
                agent(
                    "writer",
                    "autogen",
                    "anthropic",
                    "claude-sonnet-4",
                    3000.0,
                    0.02,
                    (3000.0, 1500.0),
                    (3.0, 15.0),
                    Some("writer-lite"),
                ),
                agent(
                    "writer-lite",
                    "autogen",
                    "google",
                    "gemini-2.0-flash",
                    1200.0,
                    0.02,
                    (3000.0, 1200.0),
                    (0.1, 0.4),
                    None,
                ),
                agent(
                    "reviewer",
                    "langgraph",
                    "openai",
                    "gpt-4o",
                    1500.0,
                    0.02,
                    (2500.0, 300.0),
                    (2.5, 10.0),
                    Some("reviewer-local"),
                ),
                agent(
                    "reviewer-local",
                    "smolagents",
                    "ollama",
                    "llama3.1-8b",
                    800.0,
                    0.05,
                    (2500.0, 300.0),
                    (0.0, 0.0),
                    None,
                ),
                agent(
                    "coder",
                    "awf-native",
                    "anthropic",
                    "claude-opus-4",
                    6000.0,
                    0.04,
                    (6000.0, 2500.0),
                    (15.0, 75.0),
                    Some("coder-lite"),
                ),
                agent(
                    "coder-lite",
                    "awf-native",
                    "openai",
                    "gpt-4o-mini",
                    2500.0,
                    0.05,
                    (6000.0, 2000.0),
                    (0.15, 0.6),
                    None,
                ),
                agent(
                    "classifier",
                    "smolagents",
                    "google",
                    "gemini-2.0-flash",
                    300.0,
                    0.005,
                    (500.0, 20.0),
                    (0.1, 0.4),
                    None,
                ),
            ],
            workflows: vec![
                Workflow {
                    id: "research-report",
                    weight: 0.4,
                    steps: vec![
                        step("plan", "planner", 30_000.0),
                        step("research", "researcher", 30_000.0),
                        step("draft", "writer", 30_000.0),
                        step("review", "reviewer", 30_000.0),
                    ],
                },
                Workflow {
                    id: "support-triage",
                    weight: 0.3,
                    steps: vec![
                        step("classify", "classifier", 10_000.0),
                        step("retrieve", "researcher", 30_000.0),
                        step("draft_reply", "writer", 30_000.0),
                        step("qa", "reviewer", 30_000.0),
                    ],
                },
                Workflow {
                    id: "code-review",
                    weight: 0.2,
                    steps: vec![
                        step("triage", "classifier", 10_000.0),
                        step("analyze", "coder", 60_000.0),
                        step("comment", "writer", 30_000.0),
                    ],
                },
                Workflow {
                    id: "data-summary",
                    weight: 0.1,
                    steps: vec![
                        step("extract", "coder", 60_000.0),
                        step("summarize", "writer", 30_000.0),
                    ],
                },
            ],
        }
    }
}

impl Deployment {
    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id == id)
    }

    pub fn workflow(&self, id: &str) -> Option<(usize, &Workflow)> {
        self.workflows.iter().enumerate().find(|(_, w)| w.id == id)
    }

    pub fn has_step(&self, id: &str) -> bool {
        self.workflows
            .iter()
            .any(|w| w.steps.iter().any(|s| s.id == id))
    }

    pub fn has_provider(&self, p: &str) -> bool {
        self.agents.iter().any(|a| a.provider == p)
    }

    /// Mean events of a successful execution: started + 3 per step + ended.
    pub fn mean_events_per_execution(&self) -> f64 {
        let total: f64 = self.workflows.iter().map(|w| w.weight).sum();
        let steps: f64 = self
            .workflows
            .iter()
            .map(|w| w.weight * w.steps.len() as f64)
            .sum::<f64>()
            / total.max(f64::MIN_POSITIVE);
        2.0 + 3.0 * steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_is_consistent() {
        let c = Deployment::default();
        for w in &c.workflows {
            for s in &w.steps {
                assert!(
                    c.agent(s.agent).is_some(),
                    "{} uses unknown agent {}",
                    s.id,
                    s.agent
                );
            }
        }
        for a in &c.agents {
            if let Some(f) = a.fallback {
                assert!(c.agent(f).is_some(), "{} falls back to unknown {f}", a.id);
            }
        }
        assert!(c.mean_events_per_execution() > 10.0);
    }
}
