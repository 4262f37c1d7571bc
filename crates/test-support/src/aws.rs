//! SDK configuration for the local AWS stand-ins: an explicit region, static dummy credentials
//! and a per-service endpoint, so no test ever reaches for real AWS credentials or IMDS.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::Endpoints;

/// An `SdkConfig` aimed at `endpoint_url` (one of the local stand-ins). The emulators check that
/// a request is signed, not that the keys are real.
pub async fn sdk_config(endpoints: &Endpoints, endpoint_url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(endpoints.aws_region.clone()))
        .endpoint_url(endpoint_url)
        .credentials_provider(Credentials::new(
            "summit-local",
            "summit-local-secret",
            None,
            None,
            "summit-local",
        ))
        .load()
        .await
}
