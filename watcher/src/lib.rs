//! The watcher: alert webhooks, investigation, remediation, approvals
