"""The option audit of the transformers classes ``from_hf`` converts (see
``vitgraph.interop.options``): the fields of each model's config. Examples are config
keyword arguments over a small base configuration (``tests/interop/test_options.py``);
``"@eval_only"`` marks one whose reference draws its random masks otherwise than torch's
dropout (HF's drop path: ``floor(keep + rand)``), compared in eval mode with the
drop-path rates checked one by one."""

from __future__ import annotations

from vitgraph.interop.options import DYNAMIC_SIZE, Option, honoured, partly, refused

_INIT = "initialisation only: the reference's weights are copied over it"
_OUTPUT = "the output container only: the twin returns the logits"

#: PretrainedConfig's fields, every config has them
PRETRAINED_CONFIG: dict[str, Option] = {
    "transformers_version": honoured("metadata", {"transformers_version": "4.0.0"}),
    "architectures": honoured("metadata", {"architectures": ["SomeClass"]}),
    "output_hidden_states": honoured(_OUTPUT, {"output_hidden_states": True}),
    "return_dict": honoured(_OUTPUT, {"return_dict": False}),
    "dtype": honoured("the twin is built in the reference's dtype", {"dtype": "@torch.float64"}),
    "chunk_size_feed_forward": honoured(
        "(this model never chunks)", {"chunk_size_feed_forward": 2}
    ),
    "is_encoder_decoder": honoured("(an encoder-only model)", {"is_encoder_decoder": False}),
    "id2label": honoured("the class count", {"id2label": {0: "a", 1: "b", 2: "c"}}),
    "label2id": honoured("metadata", {"label2id": {"a": 0}}),
    "problem_type": honoured(
        "the loss only, not the logits", {"problem_type": "multi_label_classification"}
    ),
}

PVT: dict[str, Option] = {
    **PRETRAINED_CONFIG,
    "image_size": honoured("any size the strides divide", {"image_size": 96}),
    "num_channels": honoured("any channel count", {"num_channels": 1}),
    "num_encoder_blocks": partly(
        "4", ({"num_encoder_blocks": 4},), "other stage counts", ({"num_encoder_blocks": 3},)
    ),
    "depths": honoured("any depths", {"depths": [2, 1, 2, 1]}),
    "sequence_reduction_ratios": honoured(
        "any ratios", {"sequence_reduction_ratios": [2, 2, 2, 1]}
    ),
    "hidden_sizes": honoured("any widths", {"hidden_sizes": [8, 8, 16, 16]}),
    "patch_sizes": partly(
        "the sizes HF's position tables fit (4, 2, 2, 2)",
        ({"patch_sizes": [4, 2, 2, 2], "strides": [4, 2, 2, 2]},),
        "others (HF resizes its position tables, a dynamic-size model: #20)",
        ({"patch_sizes": [2, 2, 2, 2], "strides": [2, 2, 2, 2]},),
        issue=DYNAMIC_SIZE,
    ),
    "strides": partly(
        "strides equal to the patch sizes",
        ({"strides": [4, 2, 2, 2]},),
        "others (HF's patch conv then has kernel = stride, stride = patch)",
        ({"strides": [4, 2, 2, 1]},),
    ),
    "num_attention_heads": honoured("any head counts", {"num_attention_heads": [2, 2, 4, 4]}),
    "mlp_ratios": honoured("any ratios", {"mlp_ratios": [4, 3, 2, 2]}),
    "hidden_act": partly(
        "'gelu'", ({"hidden_act": "gelu"},), "other activations", ({"hidden_act": "relu"},)
    ),
    "hidden_dropout_prob": honoured(
        "dropout after the embeddings, projections and MLP layers", {"hidden_dropout_prob": 0.25}
    ),
    "attention_probs_dropout_prob": honoured(
        "dropout of the attention weights", {"attention_probs_dropout_prob": 0.25}
    ),
    "initializer_range": honoured(_INIT, {"initializer_range": 0.5}),
    "drop_path_rate": honoured(
        "the stochastic-depth schedule", {"drop_path_rate": 0.2, "@eval_only": True}
    ),
    "layer_norm_eps": honoured("any eps", {"layer_norm_eps": 1e-5}),
    "qkv_bias": honoured("True, False", {"qkv_bias": False}),
    "num_labels": partly(
        "a classifier of any width",
        ({"num_labels": 7},),
        "0 (a headless model)",
        ({"num_labels": 0},),
        issue=DYNAMIC_SIZE,
    ),
}

_PER_STAGE = "any, per stage"

CVT: dict[str, Option] = {
    **PRETRAINED_CONFIG,
    "num_channels": honoured("any channel count", {"num_channels": 1}),
    "patch_sizes": honoured(_PER_STAGE, {"patch_sizes": [5, 3, 3]}),
    "patch_stride": honoured(_PER_STAGE, {"patch_stride": [2, 2, 2]}),
    "patch_padding": honoured(_PER_STAGE, {"patch_padding": [1, 0, 1]}),
    "embed_dim": honoured(_PER_STAGE, {"embed_dim": [8, 16, 24]}),
    "num_heads": honoured(_PER_STAGE, {"num_heads": [2, 2, 4]}),
    "depth": honoured(_PER_STAGE, {"depth": [2, 2, 3]}),
    "mlp_ratio": honoured(_PER_STAGE, {"mlp_ratio": [2.0, 3.0, 61 / 48]}),
    "attention_drop_rate": honoured(
        "dropout of the attention weights", {"attention_drop_rate": [0.25, 0.25, 0.25]}
    ),
    "drop_rate": refused(
        "> 0 (HF drops after the MLP's second layer only; vitgraph's layer after its "
        "activation too)",
        {"drop_rate": [0.1, 0.0, 0.0]},
    ),
    "drop_path_rate": refused(
        "> 0 (HF drops the residual stream with the MLP branch, one rate per stage)",
        {"drop_path_rate": [0.0, 0.0, 0.1]},
    ),
    "qkv_bias": honoured(_PER_STAGE, {"qkv_bias": [False, True, False]}),
    "cls_token": partly(
        "in the last stage only (HF's forward fails without it there)",
        ({"cls_token": [False, False, True]},),
        "in an earlier stage, or in none",
        ({"cls_token": [False, True, True]}, {"cls_token": [False, False, False]}),
    ),
    "qkv_projection_method": partly(
        "'dw_bn'",
        ({"qkv_projection_method": ["dw_bn"] * 3},),
        "'avg', 'linear' (HF builds no projection for them and fails)",
        ({"qkv_projection_method": ["dw_bn", "avg", "dw_bn"]},),
    ),
    "kernel_qkv": honoured(
        _PER_STAGE + " (with paddings kernel_qkv // 2)",
        {"kernel_qkv": [5, 3, 1], "padding_q": [2, 1, 0], "padding_kv": [2, 1, 0]},
    ),
    "padding_kv": partly(
        "kernel_qkv // 2",
        ({"padding_kv": [1, 1, 1]},),
        "other paddings",
        ({"padding_kv": [1, 1, 0]},),
    ),
    "stride_kv": honoured(_PER_STAGE, {"stride_kv": [1, 2, 1]}),
    "padding_q": partly(
        "kernel_qkv // 2",
        ({"padding_q": [1, 1, 1]},),
        "other paddings",
        ({"padding_q": [0, 1, 1]},),
    ),
    "stride_q": partly(
        "1",
        ({"stride_q": [1, 1, 1]},),
        "other strides (the query's sequence no longer fits the residual: HF's forward fails)",
        ({"stride_q": [2, 1, 1]},),
    ),
    "initializer_range": honoured(_INIT, {"initializer_range": 0.5}),
    "layer_norm_eps": honoured(
        "(HF's CvT never reads it: every LayerNorm has eps 1e-5)", {"layer_norm_eps": 1e-6}
    ),
}

_DROPOUT = "0 (iGPT trains without dropout)"
_DROPOUT_REFUSED = "other rates (HF drops once per branch; the spec's layer differs)"

#: ImageGPTForCausalImageModeling / ImageGPTForImageClassification (#17); examples over
#: tests.references.IGPT_TINY, compared with the start-id shift HF's examples use
IMAGEGPT: dict[str, Option] = {
    **PRETRAINED_CONFIG,
    "vocab_size": honoured("any palette size (the last id is the start id)", {"vocab_size": 9}),
    "n_positions": honoured("any sequence length", {"n_positions": 16}),
    "n_embd": honoured("any width the heads divide", {"n_embd": 48, "n_head": 4}),
    "n_layer": honoured("any depth", {"n_layer": 3}),
    "n_head": honoured("any head count dividing the width", {"n_head": 2}),
    "n_inner": partly(
        "None or a multiple of n_embd",
        ({"n_inner": 64},),
        "other widths (the spec's MLP is a whole ratio of the width)",
        ({"n_inner": 40},),
    ),
    "activation_function": partly(
        "quick_gelu (iGPT's)",
        ({"activation_function": "quick_gelu"},),
        "others",
        ({"activation_function": "relu"},),
    ),
    "resid_pdrop": partly(
        _DROPOUT, ({"resid_pdrop": 0.0},), _DROPOUT_REFUSED, ({"resid_pdrop": 0.1},)
    ),
    "embd_pdrop": partly(
        _DROPOUT, ({"embd_pdrop": 0.0},), _DROPOUT_REFUSED, ({"embd_pdrop": 0.1},)
    ),
    "attn_pdrop": partly(
        _DROPOUT, ({"attn_pdrop": 0.0},), _DROPOUT_REFUSED, ({"attn_pdrop": 0.1},)
    ),
    "layer_norm_epsilon": honoured("any eps", {"layer_norm_epsilon": 1e-3}),
    "initializer_range": honoured(_INIT, {"initializer_range": 0.5}),
    "scale_attn_weights": partly(
        "True", ({"scale_attn_weights": True},), "False", ({"scale_attn_weights": False},)
    ),
    "use_cache": honoured(
        "generation in HF only; vitgraph samples with its own cache", {"use_cache": False}
    ),
    "tie_word_embeddings": partly(
        "False", ({"tie_word_embeddings": False},), "True", ({"tie_word_embeddings": True},)
    ),
    "scale_attn_by_inverse_layer_idx": partly(
        "False",
        ({"scale_attn_by_inverse_layer_idx": False},),
        "True",
        ({"scale_attn_by_inverse_layer_idx": True},),
    ),
    "reorder_and_upcast_attn": honoured(
        "numerics only: fp32 attention either way", {"reorder_and_upcast_attn": True}
    ),
    "add_cross_attention": partly(
        "False", ({"add_cross_attention": False},), "True", ({"add_cross_attention": True},)
    ),
    "pad_token_id": honoured("generation metadata", {"pad_token_id": 3}),
    "bos_token_id": honoured("generation metadata", {"bos_token_id": 3}),
    "eos_token_id": honoured("generation metadata", {"eos_token_id": 3}),
}

_LOSS = "the loss only: the logits and boxes do not depend on it"

#: DetrForObjectDetection (#15); its examples run in tests/interop/test_hf_detr.py over a
#: tiny base (timm's resnet26, d_model 32, one encoder and two decoder layers)
DETR: dict[str, Option] = {
    **PRETRAINED_CONFIG,
    "is_encoder_decoder": honoured("(metadata)", {"is_encoder_decoder": True}),
    "backbone_config": partly(
        "timm's ResNet-50/101-style bottleneck ResNets (torchvision's layout)",
        ({"backbone": "resnet26"},),
        "HF's native ResNet (other keys; it ignores dilation) and other backbones",
        ({"backbone_config": "@ResNetConfig"},),
    ),
    "num_channels": honoured("any channel count", {"num_channels": 1}),
    "num_queries": honoured("any count", {"num_queries": 7}),
    "encoder_layers": honoured("any depth", {"encoder_layers": 2}),
    "decoder_layers": honoured("any depth", {"decoder_layers": 3}),
    "encoder_ffn_dim": partly(
        "equal to decoder_ffn_dim",
        ({"encoder_ffn_dim": 48, "decoder_ffn_dim": 48},),
        "different widths (the spec has one ffn)",
        ({"encoder_ffn_dim": 48},),
    ),
    "decoder_ffn_dim": partly(
        "equal to encoder_ffn_dim",
        ({"encoder_ffn_dim": 48, "decoder_ffn_dim": 48},),
        "different widths (the spec has one ffn)",
        ({"decoder_ffn_dim": 48},),
    ),
    "encoder_attention_heads": partly(
        "equal to decoder_attention_heads",
        ({"encoder_attention_heads": 4, "decoder_attention_heads": 4},),
        "different head counts",
        ({"encoder_attention_heads": 4},),
    ),
    "decoder_attention_heads": partly(
        "equal to encoder_attention_heads",
        ({"encoder_attention_heads": 4, "decoder_attention_heads": 4},),
        "different head counts",
        ({"decoder_attention_heads": 4},),
    ),
    "encoder_layerdrop": partly(
        "0", ({"encoder_layerdrop": 0.0},), "layer drop", ({"encoder_layerdrop": 0.1},)
    ),
    "decoder_layerdrop": partly(
        "0", ({"decoder_layerdrop": 0.0},), "layer drop", ({"decoder_layerdrop": 0.1},)
    ),
    "activation_function": partly(
        "relu, gelu",
        ({"activation_function": "gelu"},),
        "others",
        ({"activation_function": "silu"},),
    ),
    "d_model": honoured("any width the heads divide (a multiple of 4)", {"d_model": 16}),
    "dropout": honoured("dropout after attention and FFN", {"dropout": 0.2}),
    "attention_dropout": honoured("dropout on the attention weights", {"attention_dropout": 0.1}),
    "activation_dropout": honoured("dropout after the FFN activation", {"activation_dropout": 0.1}),
    "init_std": honoured(_INIT, {"init_std": 0.5}),
    "init_xavier_std": honoured(_INIT, {"init_xavier_std": 0.5}),
    "auxiliary_loss": partly(
        "False (the twin's training outputs carry the official auxiliary predictions)",
        ({"auxiliary_loss": False},),
        "True (HF then feeds each decoder layer the previous one's normed output)",
        ({"auxiliary_loss": True},),
    ),
    "position_embedding_type": partly(
        "sine",
        ({"position_embedding_type": "sine"},),
        "learned",
        ({"position_embedding_type": "learned"},),
    ),
    "dilation": honoured("DC5 (timm's output_stride 16)", {"dilation": True}),
    "class_cost": honoured(_LOSS, {"class_cost": 2}),
    "bbox_cost": honoured(_LOSS, {"bbox_cost": 2}),
    "giou_cost": honoured(_LOSS, {"giou_cost": 1}),
    "mask_loss_coefficient": honoured(_LOSS, {"mask_loss_coefficient": 2}),
    "dice_loss_coefficient": honoured(_LOSS, {"dice_loss_coefficient": 2}),
    "bbox_loss_coefficient": honoured(_LOSS, {"bbox_loss_coefficient": 2}),
    "giou_loss_coefficient": honoured(_LOSS, {"giou_loss_coefficient": 1}),
    "eos_coefficient": honoured(_LOSS, {"eos_coefficient": 0.2}),
}

_UNUSED = "not read by HF's DeformableDetr modelling code"

#: DeformableDetrForObjectDetection (#16); its examples run in
#: tests/interop/test_hf_deformable_detr.py over a tiny base (HF's native bottleneck ResNet
#: with out_features stage2-4, d_model 32, one encoder and two decoder layers)
DEFORMABLE_DETR: dict[str, Option] = {
    **{k: v for k, v in DETR.items() if k not in ("decoder_layerdrop", "dilation")},
    "backbone_config": partly(
        "HF's native bottleneck ResNet (stride in the 3x3 conv, stride-1 first stage, "
        "ReLU), out_features the last stages",
        ({"backbone_config": "@ResNetConfig"},),
        "timm backbones and other HF backbones",
        ({"use_timm_backbone": True, "backbone_config": None},),
    ),
    "return_dict": honoured(
        _OUTPUT + " (HF's own forward fails with False)", {"return_dict": True}
    ),
    "num_channels": honoured(
        "unread: HF's native ResNet reads its own config's num_channels", {"num_channels": 1}
    ),
    "d_model": honoured("any multiple of 32 the heads divide", {"d_model": 64}),
    "dilation": partly(
        "False",
        ({"dilation": False},),
        "True (HF's native ResNet ignores it)",
        ({"dilation": True},),
    ),
    "encoder_layerdrop": honoured(_UNUSED, {"encoder_layerdrop": 0.1}),
    "auxiliary_loss": honoured(
        "the loss only: HF's decoder returns every layer either way", {"auxiliary_loss": True}
    ),
    "encoder_n_points": partly(
        "equal to decoder_n_points",
        ({"encoder_n_points": 2, "decoder_n_points": 2},),
        "different point counts",
        ({"encoder_n_points": 2},),
    ),
    "decoder_n_points": partly(
        "equal to encoder_n_points",
        ({"encoder_n_points": 2, "decoder_n_points": 2},),
        "different point counts",
        ({"decoder_n_points": 2},),
    ),
    "num_feature_levels": honoured(
        "any count of at least the tapped stages (extra levels: strided convs)",
        {"num_feature_levels": 3},
    ),
    "with_box_refine": honoured(
        "iterative refinement (HF's tied class heads: class_heads=shared)",
        {"with_box_refine": True},
    ),
    "two_stage": honoured("encoder proposals", {"two_stage": True, "with_box_refine": True}),
    "two_stage_num_proposals": partly(
        "equal to num_queries",
        ({"two_stage": True, "with_box_refine": True, "two_stage_num_proposals": 5},),
        "another count (HF then keeps that many proposals as queries)",
        ({"two_stage": True, "with_box_refine": True, "two_stage_num_proposals": 7},),
    ),
    "focal_alpha": honoured(_LOSS, {"focal_alpha": 0.5}),
    "return_intermediate": honoured(_UNUSED, {"return_intermediate": False}),
    "max_position_embeddings": honoured(_UNUSED, {"max_position_embeddings": 64}),
    "disable_custom_kernels": honoured(
        "the twin always runs the PyTorch path (HF 5's is the same)",
        {"disable_custom_kernels": True},
    ),
    "tie_word_embeddings": partly(
        "True",
        ({"tie_word_embeddings": True},),
        "False (HF then predicts with other heads than its decoder refines with, or "
        "keeps a head pair per layer without refinement)",
        ({"tie_word_embeddings": False}, {"tie_word_embeddings": False, "with_box_refine": True}),
    ),
}

TABLES: dict[str, dict[str, Option]] = {
    "transformers.PvtConfig": PVT,
    "transformers.CvtConfig": CVT,
    "transformers.ImageGPTConfig": IMAGEGPT,
    "transformers.DetrConfig": DETR,
    "transformers.DeformableDetrConfig": DEFORMABLE_DETR,
}
