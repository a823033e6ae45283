//! `advmnist show`: a figure of test digits, clean and perturbed (the study's Figure 1).
