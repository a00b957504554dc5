"""The embedded sets' facts: one source for the knowledge graph and the benchmarks.

Diseases (with their phenotypes, drugs and genes) and drugs (with their targets and adverse
effects) live in `medkg/facts.py`, which also builds the embedded knowledge graph
(`medkg/build_kg.py`), so the benchmarks written by `build_sets.py` ask about exactly the
entities and spellings the graph teaches. Trials (PubMedQA-style yes/no/maybe findings) are not
graph facts and are kept here. Textbook-level content, written for a CPU demo of the recipe, not
as clinical guidance.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _kg_facts():
    # Loaded by path: `facts` is also this module's name, and both folders end up on sys.path.
    path = Path(__file__).resolve().parent / "medkg" / "facts.py"
    spec = importlib.util.spec_from_file_location("fleming_embedded_kg_facts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split(text: str, sep: str = ";") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


_KG = _kg_facts()
KG_DISEASES = _KG.DISEASES  # Disease(name, site, phenotypes, drugs, genes, contra, off_label, parent)
KG_DRUGS = _KG.DRUGS  # drug -> (targets, adverse effects)

# (disease, phenotypes, indicated drugs), every list in the graph's spelling
DISEASES = [(d.name, split(d.phenotypes), split(d.drugs)) for d in KG_DISEASES]
# (drug, targets, adverse effects)
DRUGS = [(drug, split(targets, " "), split(effects)) for drug, (targets, effects) in KG_DRUGS.items()]

# intervention, comparator, outcome (verb phrase), population, final decision, result sentence
TRIALS = [
    ("metformin", "placebo", "lower HbA1c", "adults with newly diagnosed type 2 diabetes", "yes", "HbA1c fell by 1.1 percentage points more than with placebo after 24 weeks"),
    ("empagliflozin", "placebo", "reduce cardiovascular death", "adults with type 2 diabetes and cardiovascular disease", "yes", "cardiovascular death was 38% lower in the active arm"),
    ("intensive glucose control", "standard control", "reduce all-cause mortality", "older adults with long-standing type 2 diabetes", "no", "mortality was not lower and severe hypoglycaemia was more frequent with intensive control"),
    ("atorvastatin", "placebo", "reduce major vascular events", "adults with raised LDL cholesterol", "yes", "major vascular events were reduced by about a fifth per mmol/L LDL lowering"),
    ("aspirin", "placebo", "prevent first cardiovascular events without excess bleeding", "healthy adults over seventy", "no", "no cardiovascular benefit was seen and major haemorrhage increased"),
    ("vitamin D supplementation", "placebo", "prevent fractures", "community-dwelling adults with normal vitamin D levels", "no", "fracture rates were similar between the groups"),
    ("omega-3 fatty acid capsules", "olive oil capsules", "prevent major cardiovascular events", "adults without cardiovascular disease", "no", "event rates did not differ between the arms"),
    ("early percutaneous coronary intervention", "fibrinolysis", "improve survival", "patients with ST-elevation myocardial infarction", "yes", "30-day mortality was lower with primary angioplasty"),
    ("beta-blocker therapy", "no beta-blocker", "reduce mortality", "patients with heart failure and reduced ejection fraction", "yes", "all-cause mortality fell by about a third"),
    ("digoxin", "placebo", "reduce all-cause mortality", "patients with heart failure in sinus rhythm", "no", "mortality was unchanged although hospital admissions fell"),
    ("spironolactone", "placebo", "reduce mortality", "patients with severe heart failure", "yes", "the risk of death was 30% lower with spironolactone"),
    ("rhythm control", "rate control", "improve survival", "older patients with atrial fibrillation", "no", "survival did not differ and hospital stays were more frequent with rhythm control"),
    ("apixaban", "warfarin", "reduce stroke or systemic embolism", "patients with atrial fibrillation", "yes", "stroke or systemic embolism and major bleeding were both less frequent with apixaban"),
    ("compression stockings", "no stockings", "prevent post-thrombotic syndrome", "patients after a first proximal deep vein thrombosis", "no", "post-thrombotic syndrome occurred at similar rates in both groups"),
    ("thrombolysis within 4.5 hours", "placebo", "improve functional outcome", "patients with acute ischaemic stroke", "yes", "more patients were independent at 90 days after alteplase"),
    ("mechanical thrombectomy", "medical therapy alone", "improve functional independence", "patients with large-vessel ischaemic stroke", "yes", "functional independence at 90 days nearly doubled"),
    ("tight blood pressure lowering", "standard blood pressure lowering", "improve outcome", "patients with acute intracerebral haemorrhage", "maybe", "the primary outcome was not significantly better, although an ordinal analysis favoured intensive lowering"),
    ("nimodipine", "placebo", "improve neurological outcome", "patients with aneurysmal subarachnoid haemorrhage", "yes", "poor outcome from delayed ischaemia was less frequent with nimodipine"),
    ("dexamethasone", "placebo", "reduce unfavourable outcome", "adults with pneumococcal meningitis", "yes", "unfavourable outcome and death were both reduced"),
    ("corticosteroids", "placebo", "reduce mortality", "patients with septic shock", "maybe", "shock reversal was faster but the survival effect differed between trials"),
    ("dexamethasone", "usual care", "reduce 28-day mortality", "patients hospitalised with COVID-19 needing oxygen", "yes", "28-day mortality was lower in patients receiving oxygen or ventilation"),
    ("hydroxychloroquine", "usual care", "reduce 28-day mortality", "patients hospitalised with COVID-19", "no", "mortality was similar in the two arms"),
    ("procalcitonin-guided therapy", "standard care", "shorten antibiotic exposure safely", "adults with lower respiratory tract infection", "yes", "antibiotic days fell without an increase in adverse outcomes"),
    ("inhaled corticosteroids", "placebo", "reduce exacerbations", "adults with persistent asthma", "yes", "severe exacerbations were roughly halved"),
    ("azithromycin maintenance", "placebo", "reduce exacerbations", "patients with frequently exacerbating COPD", "yes", "time to first exacerbation was longer with azithromycin"),
    ("long-term oxygen therapy", "no oxygen", "prolong survival", "COPD patients with moderate resting desaturation", "no", "time to death or first hospitalisation did not differ"),
    ("pirfenidone", "placebo", "slow decline in forced vital capacity", "patients with idiopathic pulmonary fibrosis", "yes", "decline in forced vital capacity was smaller over 52 weeks"),
    ("proton pump inhibitor prophylaxis", "placebo", "reduce 90-day mortality", "critically ill adults at risk of stress ulceration", "no", "90-day mortality was similar despite fewer bleeding events"),
    ("early enteral feeding", "delayed feeding", "reduce infections", "patients with predicted severe acute pancreatitis", "no", "major infection or death rates were not lower with early tube feeding"),
    ("antibiotic therapy", "appendicectomy", "provide comparable outcomes", "adults with uncomplicated appendicitis", "maybe", "most avoided surgery, but about three in ten needed appendicectomy within 90 days"),
    ("tenofovir", "no antiviral", "reduce mother-to-child transmission", "pregnant women with high hepatitis B viral load", "yes", "infant infection rates were lower with third-trimester tenofovir"),
    ("intravenous iron", "oral iron", "raise haemoglobin faster", "women with iron deficiency anaemia after delivery", "yes", "haemoglobin rose faster with intravenous iron"),
    ("restrictive transfusion", "liberal transfusion", "increase mortality", "critically ill adults", "no", "mortality was not higher with a restrictive threshold"),
    ("hydroxyurea", "placebo", "reduce painful crises", "adults with sickle cell anaemia", "yes", "the annual rate of painful crises was roughly halved"),
    ("imatinib", "interferon alfa with cytarabine", "improve cytogenetic response", "patients with chronic-phase chronic myeloid leukaemia", "yes", "complete cytogenetic responses were far more frequent with imatinib"),
    ("low-dose CT screening", "chest radiography", "reduce lung cancer mortality", "heavy smokers aged 55 to 74", "yes", "lung cancer deaths were 20% lower with CT screening"),
    ("PSA screening", "usual care", "reduce prostate cancer mortality", "men aged 55 to 69", "maybe", "one trial showed a modest mortality reduction while another showed none"),
    ("mammography screening", "no screening", "reduce breast cancer mortality", "women aged 50 to 69", "yes", "breast cancer mortality was lower in invited women"),
    ("methotrexate", "placebo", "reduce joint damage progression", "adults with early rheumatoid arthritis", "yes", "radiographic progression was slower with methotrexate"),
    ("hydroxychloroquine withdrawal", "continued hydroxychloroquine", "avoid disease flares", "patients with quiescent systemic lupus erythematosus", "no", "flares were more frequent after withdrawal"),
    ("allopurinol dose escalation", "fixed low dose", "achieve target urate", "patients with gout", "yes", "more patients reached a serum urate below 0.36 mmol/L"),
    ("glucosamine", "placebo", "reduce knee pain", "adults with knee osteoarthritis", "no", "pain scores improved similarly with placebo"),
    ("arthroscopic partial meniscectomy", "sham surgery", "improve knee symptoms", "adults with degenerative meniscal tears", "no", "symptom scores improved equally after sham surgery"),
    ("bisphosphonate therapy", "placebo", "reduce vertebral fractures", "postmenopausal women with osteoporosis", "yes", "new vertebral fractures were reduced by about half"),
    ("levodopa started early", "levodopa started later", "slow disease progression", "patients with early Parkinson disease", "no", "disability scores at 80 weeks were similar"),
    ("intravenous immunoglobulin", "plasma exchange", "provide similar recovery", "patients with Guillain-Barre syndrome", "yes", "disability improvement was equivalent in the two groups"),
    ("sodium valproate", "lamotrigine", "control seizures better", "patients with generalised epilepsy", "yes", "treatment failure was less frequent with valproate"),
    ("cognitive behavioural therapy", "waiting list", "reduce insomnia severity", "adults with chronic insomnia", "yes", "insomnia severity fell markedly with therapy"),
    ("antidepressant medication", "placebo", "outperform placebo", "adults with mild depressive symptoms", "maybe", "benefit over placebo was small and uncertain at low severity"),
    ("lithium", "placebo", "reduce suicide", "patients with mood disorders", "maybe", "pooled data suggested fewer suicides but individual trials were underpowered"),
    ("magnesium sulfate", "placebo", "prevent eclampsia", "women with pre-eclampsia", "yes", "eclampsia was about halved with magnesium sulfate"),
    ("low-dose aspirin", "placebo", "prevent preterm pre-eclampsia", "high-risk pregnant women", "yes", "preterm pre-eclampsia was markedly less frequent"),
    ("progesterone", "placebo", "prevent preterm birth", "women with twin pregnancies", "no", "preterm birth rates did not differ"),
    ("letrozole", "clomiphene", "increase live births", "infertile women with polycystic ovary syndrome", "yes", "live births were more frequent with letrozole"),
    ("exclusive breastfeeding promotion", "usual care", "reduce gastrointestinal infection", "healthy term infants", "yes", "gastrointestinal infections in the first year were fewer"),
    ("probiotics", "placebo", "prevent antibiotic-associated diarrhoea", "older inpatients receiving antibiotics", "no", "diarrhoea rates were similar in the two groups"),
    ("zinc supplementation", "placebo", "shorten acute diarrhoea", "children in low-income settings", "yes", "episodes were shorter with zinc"),
    ("tranexamic acid", "placebo", "reduce death from bleeding", "trauma patients with significant haemorrhage", "yes", "death due to bleeding fell when given within three hours"),
    ("balanced crystalloids", "saline", "reduce major kidney events", "critically ill adults", "maybe", "a small absolute reduction was seen that later trials did not confirm"),
    ("therapeutic hypothermia at 33 degrees", "targeted normothermia", "improve survival", "adults resuscitated from out-of-hospital cardiac arrest", "no", "survival and neurological outcome were similar"),
    ("varenicline", "placebo", "increase smoking abstinence", "adult smokers wanting to quit", "yes", "continuous abstinence rates were about doubled"),
    ("e-cigarettes", "nicotine replacement therapy", "increase one-year abstinence", "smokers attending stop-smoking services", "yes", "abstinence at one year was higher with e-cigarettes"),
]
