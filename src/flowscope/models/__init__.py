"""Models: the folders they live in (ComfyUI's layout and `extra_model_paths.yaml`) and, with
issue 5, their discovery, family detection, loading and memory-budget cache."""

from flowscope.models.folders import (
    DEFAULT_FOLDERS,
    LEGACY_NAMES,
    PT_EXTENSIONS,
    ExtraModelPath,
    ExtraModelPathsError,
    FolderSpec,
    ModelFile,
    ModelFolders,
    UnknownFolderError,
    canonical_folder_name,
    model_name_parts,
    parse_extra_model_paths,
    read_extra_model_paths,
)

__all__ = [
    "DEFAULT_FOLDERS",
    "LEGACY_NAMES",
    "PT_EXTENSIONS",
    "ExtraModelPath",
    "ExtraModelPathsError",
    "FolderSpec",
    "ModelFile",
    "ModelFolders",
    "UnknownFolderError",
    "canonical_folder_name",
    "model_name_parts",
    "parse_extra_model_paths",
    "read_extra_model_paths",
]
