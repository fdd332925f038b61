"""Student-Friendly Matching: SSM (Eq. 7-9) and DynM (Eq. 10-12), batched per class.

Both are one matrix computation per class (chunked over students to bound memory), never a loop
over samples. For multi-label MS data a teacher sample sits in the gallery of every class among
its labels.

DynM assigns in one of two ways (options.dynm_assignment):
- `argmin` (Eq. 11, the reference code): each student gets its class's teacher of least Omega. Omega
  splits into a part that depends on the teacher alone, the same for every student of a class, and a
  part linear in the student's deviation from its class; when students of a class are alike, they
  all get the same few teachers (hubs).
- `balanced`: the assignment of least total Omega in which no teacher of a class partners more than
  ceil(N_c / M_c) of its N_c students (M_c teachers): a balanced optimal transport between the class's
  students and teachers, solved exactly (scipy's linear_sum_assignment on the cost with each
  teacher's column repeated that many times; O(N_c^3), seconds at a few thousand students per class).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def dynm_schedule(e0: int, step: int, growth: int, epochs: int) -> list[int]:
    """Eq. 12: e_t = e0 + sum_{i=1..t} (step + growth * (i - 1)), for every e_t < epochs."""
    if e0 < 0 or step < 1 or growth < 0:  # the schedule would never reach `epochs`
        raise ValueError(f"DynM schedule E0={e0}, DELTA={step}, GROWTH={growth}: expected E0 >= 0, DELTA >= 1, "
                         "GROWTH >= 0")
    schedule, epoch, t = [], e0, 0
    while epoch < epochs:
        schedule.append(epoch)
        t += 1
        epoch += step + growth * (t - 1)
    return schedule


def _per_class(student_labels: np.ndarray, galleries: list[np.ndarray], score_fn, chunk: int,
               device: torch.device, balanced: bool = False) -> np.ndarray:
    """For each student, the gallery index (of its class) that maximises score_fn(students, gallery),
    or with `balanced` the one the class's balanced assignment of greatest total score gives it.

    Indices and scores stay on `device` (where the embeddings or logits are); the matches are read
    back once, at the end (a balanced class's scores go to the host for the assignment).
    """
    labels = np.asarray(student_labels, dtype=np.int64)  # host labels: members are found without a sync
    matches = torch.full((len(labels),), -1, dtype=torch.long, device=device)
    for c in np.unique(labels):
        if len(galleries[c]) == 0:
            raise ValueError(f"class {c} has no teacher sample to match")
        members = torch.as_tensor(np.flatnonzero(labels == c), device=device)
        gallery = torch.as_tensor(np.asarray(galleries[c], dtype=np.int64), device=device)
        if balanced:
            scores = torch.cat([score_fn(members[i:i + chunk], gallery) for i in range(0, len(members), chunk)])
            columns = balanced_assignment(-scores.double().cpu().numpy())
            matches[members] = gallery[torch.as_tensor(columns, device=device)]
            continue
        for start in range(0, len(members), chunk):
            rows = members[start:start + chunk]
            matches[rows] = gallery[score_fn(rows, gallery).argmax(dim=1)]
    return matches.cpu().numpy()


def ssm_match(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor, student_labels: np.ndarray,
              galleries: list[np.ndarray], chunk: int = 4096) -> np.ndarray:
    """Each RGB sample gets the MS sample of its class with the highest cosine similarity (Eq. 7-9)."""
    t = F.normalize(teacher_embeddings.float(), dim=1)
    s = F.normalize(student_embeddings.float().to(t.device), dim=1)
    return _per_class(student_labels, galleries, lambda rows, cols: s[rows] @ t[cols].t(), chunk, t.device)


DIVERGENCES = ("teacher-student", "student-teacher")


def kl_matrix(student_logits: torch.Tensor, teacher_logits: torch.Tensor, gamma: float,
              divergence: str = "teacher-student") -> torch.Tensor:
    """Omega (Eq. 10) at temperature gamma for every (student, teacher) pair: KL(p_T || p_S) as the
    reference code computes it ("teacher-student"), or KL(p_S || p_T) as Eq. 10 writes it."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"DynM divergence {divergence!r}: expected one of {', '.join(DIVERGENCES)}")
    with torch.autocast(student_logits.device.type, enabled=False):
        log_s = F.log_softmax(student_logits.float() / gamma, dim=1)
        log_t = F.log_softmax(teacher_logits.float() / gamma, dim=1)
        if divergence == "student-teacher":
            return (log_s.exp() * log_s).sum(dim=1, keepdim=True) - log_s.exp() @ log_t.t()
        return (log_t.exp() * log_t).sum(dim=1).unsqueeze(0) - log_s @ log_t.exp().t()


ASSIGNMENTS = ("argmin", "balanced")


def balanced_assignment(cost: np.ndarray) -> np.ndarray:
    """For an (N students x M teachers) cost, the teacher column of each student in the assignment of
    least total cost where each teacher takes at most ceil(N / M) students."""
    from scipy.optimize import linear_sum_assignment

    students, teachers = cost.shape
    capacity = math.ceil(students / teachers)
    rows, columns = linear_sum_assignment(np.tile(cost, (1, capacity)))
    matches = np.empty(students, dtype=np.int64)
    matches[rows] = columns % teachers
    return matches


def dynm_match(student_logits: torch.Tensor, teacher_logits: torch.Tensor, student_labels: np.ndarray,
               galleries: list[np.ndarray], gamma: float = 3.0, chunk: int = 4096,
               divergence: str = "teacher-student", assignment: str = "argmin") -> np.ndarray:
    """Each student sample gets a teacher of its class by Omega (Eq. 10): the smallest (`argmin`, Eq.
    11), or in the balanced assignment of least total Omega (`balanced`)."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"DynM assignment {assignment!r}: expected one of {', '.join(ASSIGNMENTS)}")
    student_logits = student_logits.to(teacher_logits.device)

    def score(rows, cols):
        return -kl_matrix(student_logits[rows], teacher_logits[cols], gamma, divergence)

    return _per_class(student_labels, galleries, score, chunk, teacher_logits.device, assignment == "balanced")
