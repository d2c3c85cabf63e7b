"""Using a trained model: open it from a run or a weights file (`model`), read and preprocess
the user's files (`image_files`, `preprocess`), classify or segment them (`predict`), encode
them (`embed`), and read the attention maps (`attention`).
"""
