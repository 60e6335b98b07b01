//! Gemini Live adapter (in progress).
