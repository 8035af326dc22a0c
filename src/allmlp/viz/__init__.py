"""Figures of runs and models: plots (PNG figures), views (a model's parts, asked through its hooks), the
TensorBoard hook, and every figure of a model or run folder."""

# Re-exported: allmlp.viz is the public face of the four modules.
from .plots import (CURVE_METRICS, MAX_EDGE_LINES, SPLIT_STYLES, X_AXES, char_embedding_figure, char_label,
                    curves_figure, heads_side_by_side, link_function_figure, metric_vs_key_figure,
                    mixing_matrix_figure, patch_filter_images, plot_char_embeddings, plot_confusion_matrix,
                    plot_curves, plot_link_functions, plot_metric_vs_key, plot_patch_filters,
                    plot_token_mixing_matrices, plot_token_mixing_patches, step_to_x, tile_images, token_mixing_figure)
from .views import (char_embedding_weights, find_patch_stem, link_function_layers, sampled_links, samples_per_step,
                    text_mixing_matrices, vision_token_mixing_units, vocab_labels)
from .tensorboard import colorize, default_prompt, sample_text, tensorboard_hook  # noqa: F401
from .figures import evaluate_with_figures, figures_for_model, figures_for_run  # noqa: F401
