"""Why the classical AU model (``xgb``, the paper's RDF stand-in) runs on py-feat's
``mobilefacenet`` landmarks although the paper's RDF used 68 MobileNet landmarks."""

from __future__ import annotations

import torch

from evaluation.metrics.facial import AU_MODELS
from tests.feat_standins import _mean_face


def test_xgb_keeps_the_landmark_model_its_classifier_takes() -> None:
    """py-feat's HOG + landmark AU classifiers read HOG features of the landmark model's
    face crop: 112 px with ``mobilefacenet`` (py-feat's default, which its AU classifier
    was built with), 224 px with ``mobilenet``. Measured with py-feat's own extractor the
    feature vector is then 23,328 long instead of 5,408, which the classifier's scaler
    and PCA cannot take, so ``mobilenet`` + ``xgb`` does not run in py-feat 2.1.5."""
    from feat.utils.face_mask import extract_hog_features_batched

    lengths = {}
    for size in (112, 224):  # mobilefacenet's and mobilenet's face_size in feat.detector
        faces = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        features, _ = extract_hog_features_batched(faces, _mean_face()[None])
        lengths[size] = int(features.shape[1])
    assert lengths == {112: 5408, 224: 23328}
    assert AU_MODELS["xgb"].landmark_model == "mobilefacenet" and AU_MODELS["svm"].landmark_model == "mobilefacenet"
