"""The built-in plugins, as lazy ``module:attr`` targets with one-line descriptions.

Listing them (``interpbench list``) imports nothing heavy; a plugin's module is imported the
first time it is used. Third-party plugins use entry points instead (see docs/extending.md).
"""

METHODS = [
    ("neurons", "methods.neurons:Neurons", "the layer's own units (identity basis; baseline)"),
    ("random", "methods.rotation:RandomRotation", "a seeded random orthonormal rotation (off-axis baseline)"),
    ("pca", "methods.pca:PCA", "top principal directions (randomized SVD when k << d)"),
    ("ica", "methods.ica:ICA", "FastICA after whitening to k dimensions"),
    ("kmeans", "methods.kmeans:KMeans", "k-means++ then Lloyd; directions are the unit centroids"),
    ("nmf", "methods.nmf:NMF", "non-negative matrix factorisation (post-ReLU layers)"),
    ("sparse_coding", "methods.sparse_coding:SparseCoding", "L1 dictionary learning with batched FISTA"),
    ("sae_l1", "methods.sae:L1SAE", "ReLU sparse autoencoder with L1 penalty (Towards Monosemanticity)"),
    ("sae_topk", "methods.sae:TopKSAE", "TopK sparse autoencoder with AuxK loss (Gao et al. 2024)"),
    ("file", "methods.file:FileBasis", "a basis trained elsewhere, loaded from files (SAELens, npy, ...)"),
]

METRICS = [
    ("label_consistency", "metrics.label:LabelConsistency", "agreement of stimulus labels"),
    ("color_consistency", "metrics.color:ColorConsistency", "closeness of mean image colors"),
    ("lpips_consistency", "metrics.lpips:LPIPSConsistency", "LPIPS perceptual similarity (AlexNet, v0.1)"),
    (
        "perceptual_consistency",
        "metrics.perceptual:PerceptualConsistency",
        "LPIPS-style distance on a registered model's features (unit weights)",
    ),
    (
        "caption_compressibility",
        "metrics.compressibility:CaptionCompressibility",
        "bits saved per caption when the top captions are compressed together",
    ),
    ("token_consistency", "metrics.token:TokenConsistency", "how often top activations fall on the same token"),
    ("ngram_consistency", "metrics.ngram:NgramConsistency", "character n-gram overlap of text contexts"),
]

DATASETS = [
    ("shapes", "benchmark.data.shapes:Shapes", "procedural shapes with known factors (offline)"),
    ("clipart", "benchmark.data.clipart:Clipart", "openclipart-png clip art, labelled by category"),
    ("fashion_mnist", "benchmark.data.fashion_mnist:FashionMNIST", "Fashion-MNIST from dataset-fashion-mnist"),
    ("image_folder", "benchmark.data.image_folder:ImageFolder", "any folder of class sub-folders of images"),
    ("cifar10", "benchmark.data.image_folder:CIFAR10", "CIFAR-10 from local torchvision files"),
    ("textmix", "benchmark.data.textmix:TextMix", "labelled multi-source text built from this machine"),
    ("text_files", "benchmark.data.text_files:TextFiles", "any folder of text files, one label per sub-folder"),
]

MODELS = [
    ("shapes_cnn", "benchmark.models.cnn:ShapesCNN", "small CNN trained on shapes (cached)"),
    ("shapes_cnn_untrained", "benchmark.models.cnn:ShapesCNNUntrained", "shapes_cnn at random init (control)"),
    ("fashion_cnn", "benchmark.models.cnn:FashionCNN", "small CNN trained on Fashion-MNIST (cached)"),
    ("fashion_cnn_untrained", "benchmark.models.cnn:FashionCNNUntrained", "fashion_cnn at random init (control)"),
    ("efficientnet_lite0", "benchmark.models.efficientnet:EfficientNetLite0", "EfficientNet-Lite0, ImageNet weights"),
    ("torchvision", "benchmark.models.zoo:TorchvisionModel", "torchvision:NAME, weights from the local cache"),
    ("timm", "benchmark.models.zoo:TimmModel", "timm:NAME, weights from the local cache"),
    ("open_clip", "benchmark.models.zoo:OpenClipModel", "open_clip:NAME image tower, local weights"),
    ("bytes_1l", "benchmark.models.bytes_transformer:Bytes1L", "one-layer byte transformer, 512-unit MLP"),
    ("bytes_1l_untrained", "benchmark.models.bytes_transformer:Bytes1LUntrained", "bytes_1l at random init"),
    ("minilm", "benchmark.models.minilm:MiniLM", "all-MiniLM-L6-v2 (BERT, 6 layers), local weights"),
    ("hf", "benchmark.models.hf:HFModel", "hf:NAME_OR_PATH, any local Hugging Face language model"),
]

CAPTIONERS = [
    ("dataset", "benchmark.captioners:DatasetCaptioner", "the captions the stimulus set carries"),
    ("open_clip_zero_shot", "benchmark.captioners:OpenClipZeroShot", "best prompt from a vocabulary (open_clip)"),
]
