"""Speed and cost: the GAN step's throughput against a plain reference step (`throughput`, `compare`, `measure`,
`reference_step`), step-time cost estimates (`cost`), the GPU checks (`gpu_check`) and NIQE's speed (`niqe_speed`)."""
