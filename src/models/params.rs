//! The seam between a network and everything that handles its tensors without knowing what the
//! network computes: the optimisers (`optim`), model files (`models::file`), training checkpoints
//! and the training loop (`train`). LeNet and the denoising autoencoder implement it, so each of
//! those is written once. The other way round, [`TensorUpdate`] lets a network apply an
//! optimiser's update without knowing which optimiser it is.
//!
//! This file imports nothing of the crate (a test checks it): everything above the layers may
//! depend on it, so it must depend on nothing.
//!
//! A network lists its tensors as `(name, view)` pairs in one fixed order, the order of its model
//! file; names and layouts are PyTorch's (`fc1.weight` is `(out, in)`), so a file saved here is a
//! `state_dict` that `safetensors.torch.load_file` reads directly.

use ndarray::{ArrayView, ArrayViewD, ArrayViewMut, ArrayViewMutD, Dimension};

/// A named view of one parameter tensor.
pub struct Parameter<'a, T> {
    pub name: &'static str,
    pub data: ArrayViewD<'a, T>,
}

/// A named mutable view of one parameter tensor.
pub struct ParameterMut<'a, T> {
    pub name: &'static str,
    pub data: ArrayViewMutD<'a, T>,
}

/// The named tensors of a network (or of its gradients or momentum buffers, which have the same
/// shapes and names), in file order.
pub trait Parameters<T> {
    fn parameters(&self) -> Vec<Parameter<'_, T>>;
    fn parameters_mut(&mut self) -> Vec<ParameterMut<'_, T>>;

    /// Number of scalars in all tensors together.
    fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|p| p.data.len()).sum()
    }

    /// The first non-finite value, if any, as (tensor name, flat index, value).
    fn first_non_finite(&self) -> Option<(&'static str, usize, f64)>
    where
        T: num_traits::Float,
    {
        self.parameters().iter().find_map(|p| {
            p.data.iter().position(|v| !v.is_finite()).map(|i| {
                let v = *p.data.iter().nth(i).expect("position found");
                (p.name, i, v.to_f64().unwrap_or(f64::NAN))
            })
        })
    }
}

/// A kind of network that lives in model files: its tensors in f32, the `format` key that says
/// which kind a file holds, and all-zero tensors of its shapes (gradient accumulators, momentum
/// buffers, and the template a file is read into).
pub trait Network: Parameters<f32> + Clone + PartialEq + std::fmt::Debug + Send + Sync {
    /// The value of a model file's `format` metadata key, e.g. `advmnist-lenet`.
    const FORMAT: &'static str;
    /// What the network is, in words, for messages: "a LeNet".
    const DESCRIPTION: &'static str;
    /// The layer sizes, written into the file's `architecture` key.
    const ARCHITECTURE: &'static str;

    /// Every tensor zero, in this network's shapes.
    fn zeros_like_network() -> Self;
}

/// An optimiser's update of one parameter tensor `w` from its gradient `g` and its history `v`
/// (a momentum buffer of the same shape) at learning rate `lr`, element by element, so that it
/// may be applied to any part of a tensor on its own with the bits the whole tensor would get.
/// `name` is the tensor's (e.g. `encode1.bias`), for per-tensor settings such as weight decay.
///
/// Through it a network applies the update while it makes its gradient
/// (`Autoencoder::fused_nesterov_step`), with the optimiser passed in: the optimisers (`optim`)
/// sit above the models and implement it.
pub trait TensorUpdate<T> {
    fn update_named<D: Dimension>(
        &self,
        name: &str,
        w: ArrayViewMut<T, D>,
        g: ArrayView<T, D>,
        v: ArrayViewMut<T, D>,
        lr: f64,
    );
}
