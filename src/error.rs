//! The one error type of the crate.

/// Everything that can go wrong in trainkern. Every variant names the op (or backend) and the
/// argument at fault, so that a message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer or array has the wrong length or shape.
    #[error("{op}: {arg} has the wrong shape: expected {expected}, got {got}")]
    Shape {
        op: &'static str,
        arg: &'static str,
        expected: String,
        got: String,
    },
    /// A scalar or option is out of range, non-finite, or otherwise unusable.
    #[error("{op}: {what}")]
    InvalidArgument { op: &'static str, what: String },
    /// The op exists but not for this backend or element type.
    #[error("{op} is not supported on {backend}: {what}")]
    Unsupported {
        op: &'static str,
        backend: &'static str,
        what: String,
    },
    /// The backend was not compiled in, or has no driver or device.
    #[error("backend {backend} is unavailable: {reason}")]
    BackendUnavailable {
        backend: &'static str,
        reason: String,
    },
    /// A size exceeds what the backend or the index arithmetic can handle.
    #[error("{what}: {requested} exceeds the limit {max}")]
    LimitExceeded {
        what: String,
        requested: u64,
        max: u64,
    },
    /// A buffer belongs to another device than the one the op runs on.
    #[error("{op}: {arg} lives on {got}, but the op runs on {expected}")]
    WrongDevice {
        op: &'static str,
        arg: &'static str,
        expected: String,
        got: String,
    },
    /// A PTX module the emulator cannot read; `at` is the source file and line.
    #[error("{module}.ptx: {at}: {what}")]
    PtxParse {
        module: String,
        at: String,
        what: String,
    },
    /// A fault inside a kernel run by the PTX emulator; `at` is the instruction's source file
    /// and line.
    #[error("{kernel}: {at}, block {block:?}, thread {thread:?}: {what}")]
    PtxExec {
        kernel: String,
        at: String,
        block: [u32; 3],
        thread: [u32; 3],
        what: String,
    },
    /// An error reported by wgpu (validation, out of memory, device lost, mapping).
    #[error("wgpu: {0}")]
    Wgpu(String),
    /// An error reported by the CUDA driver.
    #[error("cuda: {0}")]
    Cuda(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(feature = "cuda")]
impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Error::Cuda(e.to_string())
    }
}
