mod crds;
mod load;
