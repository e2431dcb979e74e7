//! [`DdError`]: why a Dependency Descriptor cannot be used (shared by the bit reader/writer and
//! the descriptor codec).

use thiserror::Error;

/// Why a descriptor cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DdError {
    #[error("dependency descriptor shorter than its fields")]
    Truncated,
    #[error("dependency descriptor refers to a template dependency structure not received")]
    NoStructure,
    #[error("frame_dependency_template_id outside the structure's templates")]
    TemplateOutOfRange,
    #[error("template dependency structure with more than 64 templates")]
    TooManyTemplates,
    #[error("template dependency structure with more than 4 spatial or 8 temporal layers")]
    TooManyLayers,
    #[error("more than 8 frame diffs")]
    TooManyFrameDiffs,
    #[error("template dependency structure attached to a packet that does not start a frame")]
    StructureNotAtFrameStart,
    #[error("template dependency structure of a keyframe older than the current structure's")]
    StaleStructure,
    #[error("a chain or decode target index outside the structure")]
    BadIndex,
    #[error("output buffer too small for the descriptor")]
    OutputTooSmall,
}
