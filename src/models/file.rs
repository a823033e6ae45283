//! Model files: safetensors, readable by PyTorch (`safetensors.torch.load_file`) and numpy
//! without advmnist, for any [`Network`] (LeNet, the denoising autoencoder). Tensors are f32 in
//! PyTorch's names and layouts (e.g. `lenet::PARAMETER_SHAPES`; LeNet's fc1 input is flattened in
//! (C,H,W) order, exactly as `torch.flatten` on an NCHW tensor). The `format` metadata key says
//! which network a file holds (`advmnist-lenet`, `advmnist-dae`); reading a file of another kind
//! is an error that names both kinds. The `format` keys of every safetensors file advmnist
//! writes, training checkpoints included, are here, so that a message can say what a file of
//! the wrong kind holds ([`describe_format`]).
//!
//! Files are written atomically (`io_safety::write_atomic`: a temporary file in the same
//! folder, flushed to disk, then renamed over the target), so a crash never leaves a
//! half-written model or checkpoint. Their
//! bytes depend only on their contents: no timestamps, no thread counts, and the metadata keys
//! in sorted order (the `safetensors` crate writes its metadata from a `HashMap`, whose order
//! varies from run to run, so advmnist writes the header's metadata itself; see [`encode`]).

use crate::io_safety::{write_atomic, WriteError};
use crate::models::autoencoder::Autoencoder;
use crate::models::lenet::{DropoutRates, LeNet};
use crate::models::params::Network;
use ndarray::ArrayD;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The value of the `format` metadata key of a LeNet model file.
pub const MODEL_FORMAT: &str = <LeNet<f32> as Network>::FORMAT;
/// The value of the `format` metadata key of a training checkpoint (`train::checkpoint`).
pub const CHECKPOINT_FORMAT: &str = "advmnist-checkpoint";

/// The kinds of safetensors file advmnist writes, by their `format` key, for messages such as
/// "this file holds a denoising autoencoder, but a LeNet is expected".
pub fn describe_format(format: &str) -> Option<&'static str> {
    [
        (
            <LeNet<f32> as Network>::FORMAT,
            <LeNet<f32> as Network>::DESCRIPTION,
        ),
        (Autoencoder::FORMAT, Autoencoder::DESCRIPTION),
        (
            CHECKPOINT_FORMAT,
            "a training checkpoint (not a model: finish or resume its run to get the model)",
        ),
    ]
    .into_iter()
    .find(|(f, _)| *f == format)
    .map(|(_, d)| d)
}
/// LeNet's architecture, as written in the `architecture` metadata key.
pub const ARCHITECTURE: &str = <LeNet<f32> as Network>::ARCHITECTURE;

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable safetensors file (truncated or corrupt?): {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: tensor '{name}' is missing (the file of {network} needs {expected})")]
    MissingTensor {
        path: PathBuf,
        name: String,
        network: &'static str,
        expected: String,
    },
    #[error("{path}: unexpected tensor '{name}' (the file of {network} holds only {expected})")]
    UnexpectedTensor {
        path: PathBuf,
        name: String,
        network: &'static str,
        expected: String,
    },
    #[error("{path}: this file holds {found}, but {wanted} is expected here")]
    WrongKind {
        path: PathBuf,
        found: String,
        wanted: &'static str,
    },
    #[error("{path}: tensor '{name}' has shape {found:?}, expected {expected:?}")]
    WrongShape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor '{name}' has dtype {found}, expected F32")]
    WrongDtype {
        path: PathBuf,
        name: String,
        found: String,
    },
    #[error("{path}: tensor '{name}' holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        path: PathBuf,
        name: String,
        index: usize,
        value: f32,
    },
    #[error("{path}: metadata '{key}': {reason}")]
    BadMetadata {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// A failed write is reported as the model file's own I/O error, with the same message.
impl From<WriteError> for ModelFileError {
    fn from(WriteError { path, source }: WriteError) -> Self {
        ModelFileError::Io { path, source }
    }
}

/// What a model file says about how its model was made.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMeta {
    pub dropout: DropoutRates,
    pub seed: u64,
    pub iterations: u64,
    /// SHA-256 identifying the training data (see `data::Mnist::sha256`).
    pub data_sha256: String,
    /// Further key/value pairs (e.g. how an adversarially trained model was made).
    pub extra: BTreeMap<String, String>,
}

impl ModelMeta {
    /// The metadata of a LeNet file.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.to_map_for::<LeNet<f32>>()
    }

    /// The metadata of a file holding a network of kind `N`.
    pub fn to_map_for<N: Network>(&self) -> BTreeMap<String, String> {
        let mut m = self.extra.clone();
        m.insert("format".into(), N::FORMAT.into());
        m.insert("architecture".into(), N::ARCHITECTURE.into());
        m.insert(
            "dropout".into(),
            serde_json::to_string(&self.dropout).expect("plain struct"),
        );
        m.insert("seed".into(), self.seed.to_string());
        m.insert("iterations".into(), self.iterations.to_string());
        m.insert("data_sha256".into(), self.data_sha256.clone());
        m.insert("advmnist_version".into(), env!("CARGO_PKG_VERSION").into());
        m
    }

    /// Reads the metadata back. Files made elsewhere (e.g. saved from PyTorch) may have none:
    /// missing keys read as "unknown" (no dropout, seed 0), but malformed ones are errors.
    pub fn from_map(path: &Path, m: &BTreeMap<String, String>) -> Result<Self, ModelFileError> {
        let bad = |key: &str, reason: String| ModelFileError::BadMetadata {
            path: path.into(),
            key: key.into(),
            reason,
        };
        let number = |key: &str| -> Result<u64, ModelFileError> {
            m.get(key).map_or(Ok(0), |v| {
                v.parse()
                    .map_err(|_| bad(key, format!("'{v}' is not a whole number")))
            })
        };
        let dropout = match m.get("dropout") {
            Some(v) => serde_json::from_str(v).map_err(|e| bad("dropout", e.to_string()))?,
            None => DropoutRates::NONE,
        };
        let reserved = [
            "format",
            "architecture",
            "dropout",
            "seed",
            "iterations",
            "data_sha256",
            "advmnist_version",
        ];
        Ok(ModelMeta {
            dropout,
            seed: number("seed")?,
            iterations: number("iterations")?,
            data_sha256: m
                .get("data_sha256")
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
            extra: m
                .iter()
                .filter(|(k, _)| !reserved.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

/// Encodes named f32 tensors and metadata as safetensors bytes, with the metadata keys sorted.
///
/// The tensors are serialized by the `safetensors` crate without metadata; the `__metadata__`
/// entry is then spliced in at the head of the JSON header from a `BTreeMap` (sorted keys), and
/// the header re-padded with spaces to a multiple of 8 bytes as the format requires. Tensor data
/// offsets are relative to the end of the header, so they stay valid.
pub fn encode(tensors: &[(String, ArrayD<f32>)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| {
            t.as_standard_layout()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, t.shape().to_vec(), b).expect("sizes agree"),
            )
        })
        .collect();
    let plain = safetensors::tensor::serialize(views, None).expect("f32 tensors serialize");
    with_sorted_metadata(&plain, metadata)
}

/// Splices `metadata` (sorted keys) into safetensors bytes written without any, re-padding the
/// header to a multiple of 8 bytes. The `safetensors` crate writes metadata from a `HashMap`,
/// whose order varies between runs; model files ([`encode`]) and traces (`audit::trace`) both
/// write theirs through here.
pub fn with_sorted_metadata(plain: &[u8], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let header_len = u64::from_le_bytes(plain[..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&plain[8..8 + header_len])
        .expect("JSON header")
        .trim_end();
    let rest = header.strip_prefix('{').expect("header is a JSON object");
    let mut new_header = format!(
        "{{\"__metadata__\":{}",
        serde_json::to_string(metadata).expect("strings serialize")
    );
    if rest != "}" {
        new_header.push(',');
    }
    new_header.push_str(rest);
    while new_header.len() % 8 != 0 {
        new_header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + new_header.len() + plain.len() - 8 - header_len);
    out.extend((new_header.len() as u64).to_le_bytes());
    out.extend(new_header.as_bytes());
    out.extend(&plain[8 + header_len..]);
    out
}

/// Named f32 tensors and string metadata, as read from a safetensors file.
pub struct Archive {
    pub path: PathBuf,
    pub tensors: HashMap<String, ArrayD<f32>>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads a whole safetensors file of f32 tensors, rejecting other dtypes and non-finite values.
pub fn read_archive(path: &Path) -> Result<Archive, ModelFileError> {
    let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io {
        path: path.into(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| ModelFileError::Format {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| ModelFileError::Format {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = HashMap::new();
    // In name order, so that a file with several faults always reports the same one
    // (`SafeTensors::tensors` follows a hash map's order, which changes from run to run).
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in views {
        if view.dtype() != Dtype::F32 {
            return Err(ModelFileError::WrongDtype {
                path: path.into(),
                name,
                found: format!("{:?}", view.dtype()),
            });
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(ModelFileError::NonFinite {
                path: path.into(),
                name,
                index,
                value: values[index],
            });
        }
        let array = ArrayD::from_shape_vec(view.shape().to_vec(), values)
            .expect("safetensors checked the sizes");
        tensors.insert(name, array);
    }
    Ok(Archive {
        path: path.into(),
        tensors,
        metadata,
    })
}

impl Archive {
    /// Takes the tensors of a network of kind `N`, each named `prefix + name`; with `exclusive`,
    /// any other tensor is an error.
    pub fn take<N: Network>(&mut self, prefix: &str, exclusive: bool) -> Result<N, ModelFileError> {
        let mut net = N::zeros_like_network();
        let expected = || {
            net_names::<N>()
                .iter()
                .map(|n| format!("{prefix}{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for mut p in net.parameters_mut() {
            let name = format!("{prefix}{}", p.name);
            let t = self
                .tensors
                .remove(&name)
                .ok_or_else(|| ModelFileError::MissingTensor {
                    path: self.path.clone(),
                    name: name.clone(),
                    network: N::DESCRIPTION,
                    expected: expected(),
                })?;
            if t.shape() != p.data.shape() {
                return Err(ModelFileError::WrongShape {
                    path: self.path.clone(),
                    name,
                    found: t.shape().to_vec(),
                    expected: p.data.shape().to_vec(),
                });
            }
            p.data.assign(&t);
        }
        if exclusive {
            if let Some(name) = self.tensors.keys().min() {
                return Err(ModelFileError::UnexpectedTensor {
                    path: self.path.clone(),
                    name: name.clone(),
                    network: N::DESCRIPTION,
                    expected: expected(),
                });
            }
        }
        Ok(net)
    }

    /// [`Archive::take`] for a LeNet.
    pub fn take_lenet(
        &mut self,
        prefix: &str,
        exclusive: bool,
    ) -> Result<LeNet<f32>, ModelFileError> {
        self.take(prefix, exclusive)
    }
}

/// The tensor names of a network of kind `N`, in file order.
fn net_names<N: Network>() -> Vec<&'static str> {
    N::zeros_like_network()
        .parameters()
        .iter()
        .map(|p| p.name)
        .collect()
}

/// The tensors of a network as (prefixed name, array) pairs, for [`encode`].
pub fn tensors_of<N: Network>(net: &N, prefix: &str) -> Vec<(String, ArrayD<f32>)> {
    net.parameters()
        .iter()
        .map(|p| (format!("{prefix}{}", p.name), p.data.to_owned()))
        .collect()
}

/// The tensors of a LeNet as (prefixed name, array) pairs, for [`encode`].
pub fn lenet_tensors(net: &LeNet<f32>, prefix: &str) -> Vec<(String, ArrayD<f32>)> {
    tensors_of(net, prefix)
}

/// Saves a model file of any network kind atomically.
pub fn save_model<N: Network>(
    path: &Path,
    net: &N,
    meta: &ModelMeta,
) -> Result<(), ModelFileError> {
    Ok(write_atomic(
        path,
        &encode(&tensors_of(net, ""), &meta.to_map_for::<N>()),
    )?)
}

/// Loads a LeNet model file (see [`load_network`]).
pub fn load_model(path: &Path) -> Result<(LeNet<f32>, ModelMeta), ModelFileError> {
    load_network(path)
}

/// Loads a model file holding a network of kind `N`, checking its kind, names, shapes, dtype and
/// finiteness. A file without a `format` key (e.g. saved from PyTorch) is read by its tensor
/// names alone.
pub fn load_network<N: Network>(path: &Path) -> Result<(N, ModelMeta), ModelFileError> {
    let mut archive = read_archive(path)?;
    if let Some(format) = archive.metadata.get("format") {
        if format != N::FORMAT {
            return Err(ModelFileError::WrongKind {
                path: path.into(),
                found: match describe_format(format) {
                    Some(d) => format!("{d} (format '{format}')"),
                    None => format!("an unknown kind of file (format '{format}')"),
                },
                wanted: N::DESCRIPTION,
            });
        }
    }
    let net = archive.take::<N>("", true)?;
    let meta = ModelMeta::from_map(path, &archive.metadata)?;
    Ok((net, meta))
}

/// The `format` key of a safetensors file, if it has one (to tell which network a file holds).
pub fn format_of(path: &Path) -> Result<Option<String>, ModelFileError> {
    Ok(read_archive(path)?.metadata.get("format").cloned())
}
