//! An SDK interceptor that counts every AWS call by service, operation and
//! outcome, so that metrics, tests and benchmarks see what the cloud saw.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use driftless_provider::CallCounter;

#[derive(Debug)]
pub(crate) struct CountCalls(pub Arc<CallCounter>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "driftless::CountCalls"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let outcome = match context.output_or_error() {
            Some(Ok(_)) => "ok".to_string(),
            _ => match context.response() {
                Some(resp) => format!("http_{}", resp.status().as_u16()),
                None => "network_error".to_string(),
            },
        };
        self.0.record(&service, &operation, &outcome);
        Ok(())
    }
}
