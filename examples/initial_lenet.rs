//! Writes the weights a LeNet training run starts from, for a seed, as an advmnist model file:
//! Caffe's xavier filler drawn from the seed's init stream (`TrainConfig::initial_net`), the
//! iteration-0 weights of `advmnist train --seed S` and of `advmnist advtrain --mode online
//! --seed S`. A peer in another framework (scripts/peers/torch_online_advtrain.py) starts from
//! this file, so that its run and advmnist's differ in the batches and random draws only.
//!
//! cargo run --release --example initial_lenet -- --seed 1 --out init.safetensors

use advmnist::models::file::{load_model, save_model, ModelMeta};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::train::online::OnlineConfig;
use advmnist::train::{Recipe, TrainConfig, TrainState};
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The `data_sha256` of a file whose weights have seen no data.
const NO_DATA: &str = "none";

/// Writes the initial weights of advmnist's LeNet training for a seed.
#[derive(Parser)]
#[command(name = "initial_lenet")]
struct Args {
    /// The training run's seed (`advmnist train --seed S`).
    #[arg(long)]
    seed: u64,
    /// The model file to write (safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(folder) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !folder.is_dir() {
            bail!(
                "--out {}: its folder {} does not exist",
                args.out.display(),
                folder.display()
            );
        }
    }
    // The recipe of `advmnist train` (no dropout: the on-line recipe's) gives iteration 0.
    let net: LeNet<f32> = TrainConfig::lenet(DropoutRates::NONE, args.seed).initial_net();
    // The same weights by the two other roads to iteration 0: a plain run's starting state,
    // and the on-line adversarial recipe's, which the peer reproduces.
    if net != TrainState::new(args.seed).net
        || net != OnlineConfig::new(args.seed).recipe(0).initial_net()
    {
        bail!(
            "seed {}: the recipes disagree on the initial weights",
            args.seed
        );
    }
    let meta = ModelMeta {
        dropout: DropoutRates::NONE,
        seed: args.seed,
        iterations: 0,
        data_sha256: NO_DATA.into(),
        extra: BTreeMap::from([(
            "initial_weights".to_string(),
            "Caffe's xavier filler (uniform in +-sqrt(3/fan_in), biases 0) from the seed's init stream: iteration 0 of advmnist train and advtrain --mode online".to_string(),
        )]),
    };
    save_model(&args.out, &net, &meta).with_context(|| format!("--out {}", args.out.display()))?;
    // Read back: the file holds these weights to the bit.
    let (read, _) = load_model(&args.out)?;
    if read != net {
        bail!("{}: the weights read back differ", args.out.display());
    }
    println!(
        "{}: the initial LeNet of seed {} (xavier, iteration 0)",
        args.out.display(),
        args.seed
    );
    Ok(())
}
