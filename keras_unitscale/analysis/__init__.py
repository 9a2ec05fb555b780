"""keras_unitscale.analysis: scale tracking, reports and plots."""

from keras_unitscale.analysis.scales import ScaleTable, ScaleTracker, plot_scales, track_scales
