//! Model files: round trip, byte-stable encoding, and a clear error for each kind of bad file.

use advmnist::models::file::{
    encode, lenet_tensors, load_model, save_model, ModelFileError, ModelMeta,
};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::rng::{stream, Purpose};
use std::collections::BTreeMap;
use tempfile::TempDir;

fn net() -> LeNet<f32> {
    LeNet::xavier(&mut stream(3, Purpose::Init, 0))
}

fn meta() -> ModelMeta {
    ModelMeta {
        dropout: DropoutRates::ALL,
        seed: 3,
        iterations: 77,
        data_sha256: "abc".into(),
        extra: BTreeMap::new(),
    }
}

#[test]
fn round_trip_keeps_every_value_and_the_metadata() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("m.safetensors");
    save_model(&path, &net(), &meta()).unwrap();
    let (loaded, m) = load_model(&path).unwrap();
    assert_eq!(loaded, net());
    assert_eq!(m, meta());
}

#[test]
fn encoding_is_byte_stable_and_has_sorted_metadata() {
    // The safetensors crate writes metadata from a HashMap, whose order changes between
    // processes and even between maps; encode must not.
    let a = encode(&lenet_tensors(&net(), ""), &meta().to_map());
    for _ in 0..5 {
        assert_eq!(a, encode(&lenet_tensors(&net(), ""), &meta().to_map()));
    }
    let n = u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "header padded to 8 bytes");
    let header: serde_json::Value = serde_json::from_slice(&a[8..8 + n]).unwrap();
    let keys: Vec<&String> = header["__metadata__"].as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(header["fc1.weight"]["shape"], serde_json::json!([500, 800]));
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn truncated_file_is_a_format_error_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let bytes = encode(&lenet_tensors(&net(), ""), &meta().to_map());
    let p = write(&dir, "cut.safetensors", &bytes[..bytes.len() - 100]);
    let e = load_model(&p).unwrap_err();
    assert!(matches!(e, ModelFileError::Format { .. }), "{e}");
    assert!(e.to_string().contains("cut.safetensors"), "{e}");
}

#[test]
fn missing_wrongly_named_or_misshaped_tensors_are_named() {
    let dir = TempDir::new().unwrap();
    let mut tensors = lenet_tensors(&net(), "");
    tensors.retain(|(n, _)| n != "fc2.bias");
    let p = write(
        &dir,
        "missing.safetensors",
        &encode(&tensors, &BTreeMap::new()),
    );
    let e = load_model(&p).unwrap_err();
    assert!(
        matches!(&e, ModelFileError::MissingTensor { name, .. } if name == "fc2.bias"),
        "{e}"
    );

    let mut tensors = lenet_tensors(&net(), "");
    tensors[0].0 = "conv1.weights".into();
    let p = write(
        &dir,
        "renamed.safetensors",
        &encode(&tensors, &BTreeMap::new()),
    );
    let e = load_model(&p).unwrap_err();
    assert!(
        matches!(&e, ModelFileError::MissingTensor { name, .. } if name == "conv1.weight"),
        "{e}"
    );

    let mut tensors = lenet_tensors(&net(), "");
    tensors[4].1 = tensors[4]
        .1
        .clone()
        .into_shape_with_order(vec![800, 500])
        .unwrap();
    let p = write(
        &dir,
        "shape.safetensors",
        &encode(&tensors, &BTreeMap::new()),
    );
    let e = load_model(&p).unwrap_err();
    assert!(
        matches!(&e, ModelFileError::WrongShape { name, .. } if name == "fc1.weight"),
        "{e}"
    );
    assert!(
        e.to_string().contains("[800, 500]") && e.to_string().contains("shape.safetensors"),
        "{e}"
    );

    let mut tensors = lenet_tensors(&net(), "");
    tensors.push(("extra".into(), ndarray::ArrayD::zeros(vec![1])));
    let p = write(
        &dir,
        "extra.safetensors",
        &encode(&tensors, &BTreeMap::new()),
    );
    assert!(matches!(
        load_model(&p).unwrap_err(),
        ModelFileError::UnexpectedTensor { .. }
    ));
}

#[test]
fn non_finite_values_are_rejected() {
    let dir = TempDir::new().unwrap();
    for (bad, label) in [(f32::NAN, "nan"), (f32::INFINITY, "inf")] {
        let mut n = net();
        n.conv2.weight[[3, 4, 1, 2]] = bad;
        let p = write(
            &dir,
            &format!("{label}.safetensors"),
            &encode(&lenet_tensors(&n, ""), &BTreeMap::new()),
        );
        let e = load_model(&p).unwrap_err();
        assert!(
            matches!(&e, ModelFileError::NonFinite { name, .. } if name == "conv2.weight"),
            "{e}"
        );
    }
}

#[test]
fn a_file_without_metadata_loads_as_made_elsewhere() {
    // e.g. saved from PyTorch with safetensors.torch.save_file(state_dict) and no metadata.
    let dir = TempDir::new().unwrap();
    let p = write(
        &dir,
        "torch.safetensors",
        &encode(&lenet_tensors(&net(), ""), &BTreeMap::new()),
    );
    let (loaded, m) = load_model(&p).unwrap();
    assert_eq!(loaded, net());
    assert_eq!(m.data_sha256, "unknown");
}

#[test]
fn missing_file_names_the_path() {
    let e = load_model(std::path::Path::new("/nonexistent/model.safetensors")).unwrap_err();
    assert!(
        e.to_string().contains("/nonexistent/model.safetensors"),
        "{e}"
    );
}
