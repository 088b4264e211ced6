"""fer-overlay: live emotion overlay for online-lecture gallery views."""
