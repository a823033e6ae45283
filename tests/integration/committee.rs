//! Committees: a committee of one is its member bit for bit; the committee's input
//! gradient is the gradient of `-log pbar_y` (central differences in f64 through real LeNet
//! backward passes) and is the sum of its members' own VJPs; results do not depend on the
//! thread count; committee files catch every fault by name.

use advmnist::data::IMAGE_SIDE;
use advmnist::data::{default_data_dir, load_mnist, Dataset};
use advmnist::models::committee::{
    average_log_probs, chain_members, committee_members, log_probs, member_logit_gradients,
    member_logit_gradients_exact, read_committee_file, write_committee_file, CommitteeFileError,
};
use advmnist::models::file::{save_model, ModelMeta};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::models::{Classifier, Committee, GradientRule, WithGradient};
use advmnist::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
use ndarray::{s, Array1, Array4, Ix4};
use std::path::PathBuf;
use std::sync::OnceLock;

struct Setup {
    nets: Vec<LeNet<f32>>,
    test: Dataset,
}

/// Three LeNets trained 300 iterations with seeds 1, 2, 3 (about 2-3% test error: confident on
/// most digits, so Caffe's rounding shows), and the first 600 test images (more than two of
/// `INPUT_GRADIENT_CHUNK = 256`, so chunk boundaries are crossed).
fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let data = load_mnist(&default_data_dir()).unwrap();
        let nets = (1..=3)
            .map(|seed| {
                let cfg = TrainConfig {
                    iterations: 300,
                    ..TrainConfig::lenet(DropoutRates::NONE, seed)
                };
                train::train(
                    &cfg,
                    &data,
                    TrainState::new(seed),
                    &TrainOptions::default(),
                    |_| {},
                )
                .unwrap()
                .net
            })
            .collect();
        Setup {
            nets,
            test: data.test.subset(0..600),
        }
    })
}

fn bits(a: &Array4<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// A committee of one gives its member's predictions and, under each rule, the same losses and
/// input gradient bit for bit (for `caffe-f32`, the member under `WithGradient`).
#[test]
fn a_committee_of_one_is_its_member_bit_for_bit() {
    let s = setup();
    let net = &s.nets[0];
    let x = s.test.images.view();
    let y = &s.test.labels;
    for rule in GradientRule::ALL {
        let committee = Committee {
            members: vec![net as &dyn Classifier],
            gradient: rule,
        };
        assert_eq!(committee.predict(x), net.predict(x), "{rule}: predictions");
        let member = WithGradient {
            classifier: net,
            rule,
        };
        let (want_loss, want_grad) = member.input_gradient(x, y);
        let (loss, grad) = committee.input_gradient(x, y);
        assert_eq!(
            loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want_loss.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{rule}: losses"
        );
        assert!(
            bits(&grad) == bits(&want_grad),
            "{rule}: input gradients differ"
        );
    }
    // The exact rule under WithGradient is the bare LeNet, bit for bit.
    let (_, bare) = net.input_gradient(x, y);
    let (_, wrapped) = WithGradient {
        classifier: net,
        rule: GradientRule::Exact,
    }
    .input_gradient(x, y);
    assert!(bits(&bare) == bits(&wrapped));
}

/// The committee's input gradient is the sum, in member order, of each member's own
/// `logits_vjp` of its weighted logit gradient, computed on the whole set at once (LeNet chunks
/// inside), bit for bit: the committee's own chunking changes nothing.
#[test]
fn the_input_gradient_is_the_sum_of_the_members_own_backward_passes() {
    let s = setup();
    let members: Vec<&dyn Classifier> = s.nets.iter().map(|n| n as &dyn Classifier).collect();
    let x = s.test.images.view();
    let y = &s.test.labels;
    for rule in GradientRule::ALL {
        let committee = Committee {
            members: members.clone(),
            gradient: rule,
        };
        let logits: Vec<_> = members.iter().map(|m| m.logits(x)).collect();
        let (want_loss, d) = member_logit_gradients(&logits, y, rule);
        let want = chain_members(&d, |m, dz| members[m].logits_vjp(x, dz));
        let (loss, grad) = committee.input_gradient(x, y);
        assert_eq!(loss, want_loss, "{rule}");
        assert!(bits(&grad) == bits(&want), "{rule}");
        assert!(grad.iter().any(|&v| v != 0.0));
    }
}

/// Whatever the thread count, the same bits.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let s = setup();
    let members: Vec<&dyn Classifier> = s.nets.iter().map(|n| n as &dyn Classifier).collect();
    let committee = Committee::new(members);
    let x = s.test.images.slice(s![..300, .., .., ..]);
    let y = &s.test.labels[..300];
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| (committee.logits(x), committee.input_gradient(x, y).1))
    };
    let (l1, g1) = run(1);
    let (l2, g2) = run(2);
    assert_eq!(l1, l2);
    assert!(bits(&g1) == bits(&g2));
}

/// Two random images with pixels uniform in [0, 1] (as `tests/integration/lenet.rs`: real digits' blank
/// backgrounds make pooling ties, kinks no central difference can match).
fn random_images() -> Array4<f64> {
    advmnist::testutil::random_array::<f64, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 21)
        .mapv(|v| 0.5 * (v + 1.0))
}

/// The committee loss `sum_n -log pbar_y` of f64 members.
fn committee_loss_f64(nets: &[LeNet<f64>], x: &Array4<f64>, y: &[u8]) -> f64 {
    let logits: Vec<_> = nets.iter().map(|n| n.logits(x.view())).collect();
    let c = average_log_probs(&log_probs(&logits));
    y.iter()
        .enumerate()
        .map(|(n, &t)| -c[[n, t as usize]])
        .sum()
}

/// The committee's input gradient from the same functions the f32 `Committee` uses
/// (`member_logit_gradients_exact`, `chain_members`), with f64 LeNets' own backward passes.
fn committee_gradient_f64(nets: &[LeNet<f64>], x: &Array4<f64>, y: &[u8]) -> Array4<f64> {
    let logits: Vec<_> = nets.iter().map(|n| n.logits(x.view())).collect();
    let (_, d) = member_logit_gradients_exact(&logits, y);
    chain_members(&d, |m, dz| {
        let (_, cache) = nets[m].forward(x.view(), None);
        nets[m].backward(dz, &cache, None, true).unwrap()
    })
}

/// Three LeNets in f64 as the PyTorch fixture's (`tests/integration/lenet.rs`): xavier weights (seeds 1, 2,
/// 3) and biases uniform in +-0.1, so that the bias terms are tested too.
fn random_nets_f64() -> Vec<LeNet<f64>> {
    use rand_chacha::rand_core::SeedableRng;
    (1..=3u64)
        .map(|seed| {
            let mut net = LeNet::<f64>::xavier(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            for mut p in net.parameters_mut() {
                if p.name.ends_with(".bias") {
                    let len = p.data.len();
                    let b = advmnist::testutil::random_array::<f64, ndarray::Ix1>(len, 100 + seed)
                        * 0.1;
                    p.data.assign(&b.into_dyn());
                }
            }
            net
        })
        .collect()
}

/// The whole chain from `-log pbar_y` to every pixel, through three LeNets' own backward passes,
/// against central differences in f64 (`testutil::gradcheck`'s step and tolerance), on random
/// images and random members as `tests/integration/lenet.rs`'s check of one LeNet: there, with
/// `h = 1e-6`, no step crosses a max-pool near-tie or a ReLU kink. (With the trained members of
/// [`setup`] one pixel in 1568 was off by 1.6e-4 relative: a kink the step crossed.)
#[test]
fn the_committee_input_gradient_matches_finite_differences_in_f64() {
    let nets = random_nets_f64();
    let x = random_images();
    let y = [7u8, 2];
    let analytic = committee_gradient_f64(&nets, &x, &y);
    let one = Array1::from_elem(1, 1.0);
    let numeric = numeric_gradient(&x, &one, |x| {
        Array1::from_elem(1, committee_loss_f64(&nets, x, &y))
    });
    assert_gradient_matches("committee dL/dx", &analytic.into_dyn(), &numeric);
}

/// The f32 `Committee` against the same math in f64 on real digits. Tolerance: 1e-4 of the
/// largest value, as `tests/integration/lenet.rs` allows LeNet's f32 input gradient against PyTorch's f64
/// one (rounding of 2^-24 per operation over sums of up to 800 terms is about 1e-5 of it); the
/// committee adds a weighted sum of three such gradients.
#[test]
fn the_f32_committee_agrees_with_the_f64_math() {
    let s = setup();
    let x32 = s.test.images.slice(s![..8, .., .., ..]).to_owned();
    let y = &s.test.labels[..8];
    let members: Vec<&dyn Classifier> = s.nets.iter().map(|n| n as &dyn Classifier).collect();
    let (_, g32) = Committee::new(members).input_gradient(x32.view(), y);
    let nets: Vec<LeNet<f64>> = s.nets.iter().map(|n| n.cast()).collect();
    let g64 = committee_gradient_f64(&nets, &x32.mapv(f64::from), y);
    let largest = g64.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    advmnist::testutil::assert_close(
        "committee dL/dx f32 vs f64",
        g32.mapv(f64::from).view().into_dyn(),
        g64.view().into_dyn(),
        1e-4 * largest,
        0.0,
    );
}

fn saved_members(dir: &std::path::Path) -> Vec<PathBuf> {
    let meta = ModelMeta {
        dropout: DropoutRates::NONE,
        seed: 1,
        iterations: 300,
        data_sha256: "test".into(),
        extra: Default::default(),
    };
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let paths = vec![dir.join("a.safetensors"), dir.join("sub/b.safetensors")];
    for (p, net) in paths.iter().zip(&setup().nets) {
        save_model(p, net, &meta).unwrap();
    }
    paths
}

/// Written and read back, from the file's folder; members in a sibling folder get `..`.
#[test]
fn committee_files_round_trip_with_relative_paths() {
    let dir = tempfile::TempDir::new().unwrap();
    let members = saved_members(dir.path());
    let file = dir.path().join("sub/c.json");
    write_committee_file(&file, &members).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], "advmnist-committee");
    assert_eq!(v["members"][0]["path"], "../a.safetensors");
    assert_eq!(v["members"][1]["path"], "b.safetensors");
    assert_eq!(v["members"][0]["sha256"].as_str().unwrap().len(), 64);
    let read = read_committee_file(&file).unwrap();
    assert_eq!(read.len(), 2);
    for (r, m) in read.iter().zip(&members) {
        assert!(advmnist::io_safety::same_file(r, m), "{r:?} vs {m:?}");
    }
    // The `--committee` argument: a .json file, or model files separated by commas.
    assert_eq!(committee_members(file.to_str().unwrap()).unwrap(), read);
    assert_eq!(
        committee_members("a.safetensors, b.safetensors").unwrap(),
        vec![
            PathBuf::from("a.safetensors"),
            PathBuf::from("b.safetensors")
        ]
    );
    let e = committee_members("a.safetensors,,b.safetensors").unwrap_err();
    assert!(e.to_string().contains("--committee"), "{e}");
}

/// Each fault gets its own error, naming the committee file and, where there is one, the member.
#[test]
fn committee_file_faults_are_named() {
    let dir = tempfile::TempDir::new().unwrap();
    let members = saved_members(dir.path());
    let file = dir.path().join("c.json");
    write_committee_file(&file, &members).unwrap();
    let good = std::fs::read_to_string(&file).unwrap();
    let message = |e: CommitteeFileError| e.to_string();

    std::fs::write(&file, "{\"format\": \"advmnist-committee\", \"members\": [").unwrap();
    let e = read_committee_file(&file).unwrap_err();
    assert!(matches!(e, CommitteeFileError::Malformed { .. }), "{e}");
    assert!(message(e).contains("c.json"));

    std::fs::write(&file, good.replace("advmnist-committee", "advmnist-lenet")).unwrap();
    let e = read_committee_file(&file).unwrap_err();
    assert!(
        matches!(e, CommitteeFileError::WrongFormat { .. })
            && e.to_string().contains("advmnist-lenet"),
        "{e}"
    );

    std::fs::write(
        &file,
        good.replace("sub/b.safetensors", "sub/gone.safetensors"),
    )
    .unwrap();
    let e = read_committee_file(&file).unwrap_err();
    assert!(
        matches!(e, CommitteeFileError::MissingMember { .. })
            && e.to_string().contains("c.json")
            && e.to_string().contains("gone.safetensors"),
        "{e}"
    );

    std::fs::write(&file, &good).unwrap();
    assert!(read_committee_file(&file).is_ok());
    // One member's bytes change after the committee file was written.
    let mut bytes = std::fs::read(&members[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&members[1], bytes).unwrap();
    let e = read_committee_file(&file).unwrap_err();
    assert!(
        matches!(e, CommitteeFileError::HashMismatch { .. })
            && e.to_string().contains("b.safetensors")
            && e.to_string().contains("c.json"),
        "{e}"
    );

    // The writer refuses to write over a member, and an empty list.
    let e = write_committee_file(&members[0], &members).unwrap_err();
    assert!(
        matches!(e, CommitteeFileError::OverwritesMember { .. }),
        "{e}"
    );
    assert!(write_committee_file(&file, &[]).is_err());
}
