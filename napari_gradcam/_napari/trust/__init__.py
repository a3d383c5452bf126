"""The trust & compare dock: sanity, faithfulness, feature maps and class contrast."""
