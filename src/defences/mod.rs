//! Defences: preprocessing stages put in front of a classifier (the study's section 3.3). The
//! low-pass filter lives here; the denoising autoencoder is a network (`models::autoencoder`);
//! both become stages of a `models::pipeline::Pipeline`.

pub mod lowpass;
