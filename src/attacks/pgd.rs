//! Iterative gradient sign / projected gradient descent in the L-infinity ball (Kurakin et al.
//! 2017; Madry et al. 2018), beyond the study's single step:
//!
//! ```text
//! X_0     = X                        or, with a random start, clip(X + U(-eps, eps), 0, 1)
//! X_{t+1} = clip( clamp(X_t + alpha * sign(grad L(X_t)), X - eps, X + eps), 0, 1 )
//! ```
//! Every step projects back into the eps-ball around the clean image and then into [0, 1], so
//! every iterate is a valid image within eps. The gradient is recomputed at every step through
//! the model's own backward pass, with the true labels, in evaluation mode.

use crate::models::gradient::sign;
use crate::models::Classifier;
use crate::rng::{stream, Purpose};
use ndarray::{Array4, ArrayView4, ArrayViewMut3, Axis, Zip};
use ndarray_rand::rand_distr::Uniform;
use ndarray_rand::RandomExt;
use rand_chacha::ChaCha8Rng;

/// Gradient steps per level when none are given: the command line's `--steps` default.
pub const DEFAULT_STEPS: usize = 10;

/// PGD's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PgdConfig {
    pub eps: f32,
    pub steps: usize,
    /// Step size alpha.
    pub step_size: f32,
    /// Seed of the random start; `None` starts at the clean image.
    pub random_start: Option<u64>,
    /// Image `i` draws its random start from stream `first_stream + i` (0: the images are the
    /// whole set; see `attacks::Perturbation::starting_at`).
    pub first_stream: u64,
}

impl PgdConfig {
    /// `steps` steps of `2.5 eps / steps` (Madry et al.'s rule of thumb: enough to cross the
    /// ball and back), no random start.
    pub fn new(eps: f32, steps: usize) -> Self {
        PgdConfig {
            eps,
            steps,
            step_size: 2.5 * eps / steps.max(1) as f32,
            random_start: None,
            first_stream: 0,
        }
    }
}

pub fn pgd(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    cfg: &PgdConfig,
) -> Array4<f32> {
    run(model, x, labels, cfg, |_| cfg)
}

/// PGD with a ball of its own for each image: image `i` moves within `configs[i].eps` of its
/// clean self by steps of `configs[i].step_size`. The images share their gradient passes, so
/// every config must have the same steps, random-start seed and first stream. Image `i` is bit
/// for bit what [`pgd`] makes of it with `configs[i]`.
pub fn pgd_per_image(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    configs: &[PgdConfig],
) -> Array4<f32> {
    assert_eq!(configs.len(), x.dim().0, "one PGD config per image");
    let Some(shared) = configs.first() else {
        return x.to_owned();
    };
    assert!(
        configs
            .iter()
            .all(|c| (c.steps, c.random_start, c.first_stream)
                == (shared.steps, shared.random_start, shared.first_stream)),
        "the images of one PGD run share its steps and random start"
    );
    run(model, x, labels, shared, |image| &configs[image])
}

/// PGD with `shared`'s steps and random start, image `i` in the ball `ball(i)`.
fn run<'c>(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    shared: &PgdConfig,
    ball: impl Fn(usize) -> &'c PgdConfig + Sync,
) -> Array4<f32> {
    let mut adv = x.to_owned();
    if let Some(seed) = shared.random_start {
        for (i, img) in adv.axis_iter_mut(Axis(0)).enumerate() {
            let rng = &mut stream(seed, Purpose::RandomStart, shared.first_stream + i as u64);
            uniform_start(img, ball(i).eps, rng);
        }
    }
    iterate(model, x, labels, adv, shared.steps, ball)
}

/// PGD's random start for one image `(1,28,28)`, in place: `clip(x + U, 0, 1)` with `U`
/// uniform in `[-eps, eps]` per pixel, drawn from `rng` in pixel order.
pub fn uniform_start(mut image: ArrayViewMut3<f32>, eps: f32, rng: &mut ChaCha8Rng) {
    let u = ndarray::Array3::<f32>::random_using(
        image.raw_dim(),
        Uniform::new_inclusive(-eps, eps).expect("eps >= 0"),
        rng,
    );
    image.zip_mut_with(&u, |a, &u| *a = (*a + u).clamp(0.0, 1.0));
}

/// `steps` steps of size `step_size` in the L-infinity ball of radius `eps` around `x`,
/// from `start` (a point of that ball in [0, 1], e.g. made by [`uniform_start`]): the
/// iterations of [`pgd`] after its start, for a caller that draws the start itself
/// (on-line adversarial training's random start, from the training run's own streams).
pub fn steps_from(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    start: Array4<f32>,
    eps: f32,
    steps: usize,
    step_size: f32,
) -> Array4<f32> {
    assert_eq!(start.dim(), x.dim(), "the start has the images' shape");
    let cfg = PgdConfig {
        eps,
        steps,
        step_size,
        random_start: None,
        first_stream: 0,
    };
    iterate(model, x, labels, start, steps, |_| &cfg)
}

/// `steps` steps from `adv`, image `i` in the ball `ball(i)` around `x`.
fn iterate<'c>(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    mut adv: Array4<f32>,
    steps: usize,
    ball: impl Fn(usize) -> &'c PgdConfig + Sync,
) -> Array4<f32> {
    for _ in 0..steps {
        let (_, grad) = model.input_gradient(adv.view(), labels);
        Zip::indexed(&mut adv)
            .and(&x)
            .and(&grad)
            .par_for_each(|(i, _, _, _), a, &x0, &g| {
                let PgdConfig { eps, step_size, .. } = *ball(i);
                let stepped = *a + step_size * sign(g);
                *a = stepped.clamp(x0 - eps, x0 + eps).clamp(0.0, 1.0);
            });
    }
    adv
}
