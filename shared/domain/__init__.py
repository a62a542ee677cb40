"""Pure domain logic and types: importing it loads neither botocore nor onnxruntime (a test checks)."""
