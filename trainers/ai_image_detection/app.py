# The Hub Space's page for this metric (needs gradio, which the Space has; deepvrm never runs this file).
import evaluate
from evaluate.utils import launch_gradio_widget

launch_gradio_widget(evaluate.load("ai_image_detection.py"))
