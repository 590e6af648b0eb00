use std::net::IpAddr;

/// What the inbound adapter knows about the request that triggered a use case. Recorded in audit
/// events (AUD-1) and used for per-IP limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The client's address as the server determined it.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, cut to a bounded length.
    pub user_agent: Option<String>,
    /// The request id that also appears in logs and error bodies.
    pub request_id: Option<String>,
}

impl RequestContext {
    /// Longest user agent kept, in characters; longer ones are cut.
    pub const MAX_USER_AGENT: usize = 512;

    /// A context with the user agent cut to [`Self::MAX_USER_AGENT`] characters.
    #[must_use]
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>, request_id: Option<String>) -> Self {
        Self {
            ip,
            user_agent: user_agent.map(|ua| ua.chars().take(Self::MAX_USER_AGENT).collect()),
            request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_user_agents_are_cut() {
        let ua = "x".repeat(2_000);
        let ctx = RequestContext::new(None, Some(&ua), None);
        assert_eq!(
            ctx.user_agent.unwrap().len(),
            RequestContext::MAX_USER_AGENT
        );
    }
}
