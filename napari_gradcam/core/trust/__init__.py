"""Can a map be trusted: sanity checks, faithfulness, noise, feature maps, class contrast."""
