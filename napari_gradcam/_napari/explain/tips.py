"""The words of the Grad-CAM dock: a tooltip for each control, in a pathologist's terms."""

IMAGE_TIP = "the image (or slide) layer to explain"
BUNDLED_TIP = (
    "demo: the small CNN; demo-vit: the small Vision Transformer; demo-vlm: a small "
    "vision-language model (ask it text prompts); demo-segmenter: a small nuclei segmenter (ask "
    "it about an output region); or your own model"
)
MODEL_TIP = (
    "a bundled model (demo, demo-vit, demo-vlm, demo-segmenter), 'package.module:factory', "
    "'path/file.py:factory', 'timm:NAME', 'smp:NAME', 'open_clip:ARCH', 'hf:FOLDER' or a "
    "TorchScript file 'model.pt'"
)
WEIGHTS_TIP = "optional state dict for a factory; its model card (JSON) lies beside it"
LOAD_TIP = "load the model now to list its layers and attention heads (Explain loads it too)"
LAYER_TIP = (
    "the model layer whose output is explained, with its map grid; auto: the last spatial "
    "layer of a CNN, or a transformer's last layer whose patch tokens reach the output"
)
METHOD_TIP = (
    "how the map is made: Grad-CAM is fast; Score-CAM, Ablation-CAM and occlusion run many "
    "forwards per tile (much slower, estimate shown when tiling)"
)
KIND_TIP = (
    "what to ask the model about: a class, several classes together, a class against its "
    "nearest (or another) class, a text prompt (vision-language models), a region the map "
    "should look like (image encoders), or a class inside a region of a segmentation "
    "model's output. Greyed kinds need another kind of model (hover them for why)"
)
TARGET_TIP = (
    "class to explain; predicted: each region's (or each tile's) own top class. A class you "
    "chose is kept when you switch to a model that has it"
)
SEVERAL_TIP = "tick two or more classes: the map shows the evidence for all of them together"
MAIN_TIP = "the class whose evidence is shown"
AGAINST_TIP = (
    "the class it is told apart from: the map keeps what speaks for the class and against this "
    "one (Finer-CAM); nearest class: the runner-up of each image"
)
PROMPT_TIP = (
    "what to look for, in words, e.g. 'nuclei-dense tissue'; the map shows what makes the "
    "image match it. Several prompts separated by ';' are averaged (an ensemble). Enter "
    "explains; the last 10 prompts are remembered"
)
REGION_LAYER_TIP = (
    "the layer holding the region: a Shapes layer (pick a shape) or, for an output region, a "
    "Labels layer (pick a label)"
)
SHAPE_TIP = (
    "the shape to use; selected shape: the one selected on the canvas. Like a region: its "
    "bounding box is embedded and every image or tile is compared to it"
)
LABEL_TIP = "the label value whose painted pixels form the output region"
NOT_TILED_TIP = (
    "an output region is explained in one piece: a segmentation model scores every pixel of "
    "the region at once, so no tiles are needed"
)
REGION_TIP = (
    "whole layer: the current 2-D plane; selected rectangles: one heatmap per selected "
    "rectangle (all rectangles if none is selected); field of view: what the canvas shows"
)
SHAPES_TIP = "the Shapes layer whose rectangles are explained"
TTA_TIP = (
    "test-time augmentation: explain the region and its horizontal, vertical and double "
    "flips, flip the maps back and average them (smoother maps, 4x the work)"
)
BFLOAT16_TIP = (
    "run the masked forwards on a bfloat16 copy of the model: about 2x faster on CPUs with "
    "AVX-512 BF16 or AMX and on GPUs; scores keep ~3 digits, so the map is close to, not "
    "equal to, the float32 one"
)
EARLIER_TIP = (
    "what happens to earlier maps of the same image: hidden (kept in the layer list, tick "
    "their eye to compare) or replaced (removed once the new map is done)"
)
OPACITY_TIP = "opacity of the newest map (and of the next ones); 0: clear, 1: opaque"
ADVANCED_TIP = "show the model layer, weights, method options and tiling options"
EXPLAIN_TIP = "explain the region with the model (Ctrl+Enter while the dock has focus)"
CANCEL_TIP = "stop after the current step; nothing half-made is added (Esc in the dock)"
RESULT_TIP = "the class found, the time taken, and any warning or error in full"
