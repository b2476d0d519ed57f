"""Plug-and-play TSP with an image-space diffusion prior (Graikos et al., section 5).

Instances and LKH-3 references (:mod:`.instances`), tours as images (:mod:`.render`),
decoding and 2-opt (:mod:`.decode`) and the constructive baselines (:mod:`.baselines`).
"""

from numpyro_diffusion.tasks.tsp.baselines import (
    BASELINES,
    farthest_insertion,
    greedy_edge,
    nearest_neighbour,
    random_tour,
)
from numpyro_diffusion.tasks.tsp.compare import (
    compare_methods,
    format_table,
    paired_difference,
    plot_solution,
    prior_label,
)
from numpyro_diffusion.tasks.tsp.decode import distance_matrix, greedy_tour, two_opt
from numpyro_diffusion.tasks.tsp.instances import (
    check_coords,
    gap,
    random_instances,
    reference_tours,
    tour_length,
)
from numpyro_diffusion.tasks.tsp.render import (
    EdgeImages,
    adjacency_image,
    edge_images,
    render_tours,
    tour_adjacency,
)
from numpyro_diffusion.tasks.tsp.solve import (
    METHODS,
    TSPResult,
    adjacency,
    load_tsp_prior,
    relaxation_model,
    solve,
)

__all__ = [
    "BASELINES",
    "METHODS",
    "TSPResult",
    "adjacency",
    "load_tsp_prior",
    "relaxation_model",
    "solve",
    "EdgeImages",
    "adjacency_image",
    "check_coords",
    "compare_methods",
    "format_table",
    "paired_difference",
    "prior_label",
    "plot_solution",
    "distance_matrix",
    "edge_images",
    "farthest_insertion",
    "gap",
    "greedy_edge",
    "greedy_tour",
    "nearest_neighbour",
    "random_instances",
    "random_tour",
    "reference_tours",
    "render_tours",
    "tour_adjacency",
    "tour_length",
    "two_opt",
]
