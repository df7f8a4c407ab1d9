//! Turning SDK errors into [`CloudError`]s the reconciler can act on.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use driftless_provider::{CloudError, ErrorClass};

/// Codes that no retry can fix: the spec or the account must change.
const TERMINAL: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "BucketAlreadyExists",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidLocationConstraint",
    "IllegalLocationConstraintException",
    "InvalidRequest",
    "InvalidTag",
    "MalformedXML",
    "MalformedPolicy",
    "KMS.NotFoundException",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "InvalidVpcRange",
    "InvalidSubnet.Range",
    "InvalidSubnet.Conflict",
    "InvalidAMIID.Malformed",
    "InvalidAMIID.NotFound",
    "InvalidInstanceType",
    "InvalidGroup.Duplicate",
    "InvalidGroup.Reserved",
    "InvalidVpcID.Malformed",
    "InvalidSubnetID.Malformed",
    "InvalidGroupId.Malformed",
    "InvalidInstanceID.Malformed",
    "InvalidKeyPair.NotFound",
    "InvalidKeyPair.Duplicate",
    "InvalidKey.Format",
    "InvalidUserData.Malformed",
    "VpcLimitExceeded",
    "TooManyBuckets",
];

/// Codes that ask us to slow down.
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "SlowDown",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "PriorRequestNotComplete",
];

pub(crate) fn class_of(code: &str) -> ErrorClass {
    if TERMINAL.contains(&code) {
        ErrorClass::Terminal
    } else if THROTTLED.contains(&code) {
        ErrorClass::Throttled
    } else {
        ErrorClass::Retryable
    }
}

/// The HTTP status of a service error, when there is a response.
pub(crate) fn status_of<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    err.raw_response().map(HttpStatus::status_code)
}

pub(crate) trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// The error code of a service error (e.g. `NoSuchTagSet`), if any.
pub(crate) fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code(),
        _ => None,
    }
}

/// Classify any SDK error, keeping AWS's own code and message.
pub(crate) fn cloud_error<E, R>(err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let status = status_of(&err);
    match &err {
        SdkError::ServiceError(ctx) => {
            let code = ctx
                .err()
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP{}", status.unwrap_or(0)));
            let message = ctx
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
            let class = match (class_of(&code), status) {
                (ErrorClass::Retryable, Some(429)) => ErrorClass::Throttled,
                (ErrorClass::Retryable, Some(403)) => ErrorClass::Terminal,
                (class, _) => class,
            };
            CloudError {
                class,
                code,
                message,
            }
        }
        SdkError::ConstructionFailure(_) => {
            CloudError::terminal("InvalidRequest", DisplayErrorContext(&err).to_string())
        }
        SdkError::TimeoutError(_) => {
            let t = crate::config::call_timeouts();
            CloudError::retryable(
                "CallTimedOut",
                format!(
                    "the cloud did not answer in time (each attempt {:?}, in all {:?}: --cloud-attempt-timeout, --cloud-operation-timeout)",
                    t.attempt, t.operation
                ),
            )
        }
        _ => CloudError::retryable("NetworkError", DisplayErrorContext(&err).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        assert_eq!(class_of("InvalidBucketName"), ErrorClass::Terminal);
        assert_eq!(class_of("AccessDenied"), ErrorClass::Terminal);
        assert_eq!(class_of("SlowDown"), ErrorClass::Throttled);
        assert_eq!(class_of("RequestLimitExceeded"), ErrorClass::Throttled);
        assert_eq!(class_of("InternalError"), ErrorClass::Retryable);
    }
}
