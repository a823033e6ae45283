//! The study's average distortion per pixel (section 3.2): for a set of `n` images of `c`
//! channels and `h x w` pixels, `dist = 1/(n c h w) * sum |X' - X|`, measured on the
//! perturbation actually applied, i.e. after clipping to [0, 1]. With clipping, a gradient-sign
//! step of eps moves most MNIST pixels (which sit at 0 or 1) by eps or not at all, so dist is
//! well below eps (about 0.2 at eps = 0.37, the study's Table 2).

use ndarray::{ArrayView4, Zip};

/// `1/(n c h w) * sum |perturbed - clean|`, summed in f64 so that 7.8 million terms lose nothing.
pub fn distortion_per_pixel(clean: ArrayView4<f32>, perturbed: ArrayView4<f32>) -> f64 {
    assert_eq!(
        clean.shape(),
        perturbed.shape(),
        "distortion of sets of different shapes"
    );
    let mut sum = 0.0f64;
    Zip::from(&clean)
        .and(&perturbed)
        .for_each(|&x, &p| sum += (p as f64 - x as f64).abs());
    sum / clean.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn hand_worked_case() {
        // Two 1x2 images: |0.5-0.25| + 0 + |0-1| + |1-1| = 1.25 over 4 pixels -> 0.3125.
        let x = Array4::from_shape_vec((2, 1, 1, 2), vec![0.25, 0.5, 1.0, 1.0]).unwrap();
        let p = Array4::from_shape_vec((2, 1, 1, 2), vec![0.5, 0.5, 0.0, 1.0]).unwrap();
        assert_eq!(distortion_per_pixel(x.view(), p.view()), 0.3125);
    }
}
