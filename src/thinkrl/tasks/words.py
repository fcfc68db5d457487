"""Word lists for the word tasks (plain lower-case ASCII, no duplicates)."""

from __future__ import annotations

# fmt: off
WORDS = (
    "able", "about", "above", "accept", "across", "act", "action", "actor", "add", "admit", "adult", "after",
    "again", "agent", "agree", "ahead", "air", "allow", "almost", "alone", "along", "already", "also", "always",
    "amount", "anger", "angle", "animal", "answer", "apple", "area", "argue", "arm", "army", "around", "arrive",
    "art", "artist", "ask", "attack", "avoid", "away", "baby", "back", "bad", "bag", "ball", "bank", "bar", "base",
    "basket", "bath", "beach", "bean", "bear", "beat", "beauty", "bed", "beef", "before", "begin", "behind",
    "believe", "bell", "belt", "bench", "best", "better", "bird", "birth", "bit", "bite", "black", "blade", "blank",
    "blind", "block", "blood", "blow", "blue", "board", "boat", "body", "bone", "book", "border", "bottle",
    "bottom", "bowl", "box", "boy", "brain", "branch", "brave", "bread", "break", "brick", "bridge", "brief",
    "bright", "bring", "broad", "brother", "brown", "brush", "build", "burn", "bus", "busy", "butter", "button",
    "buy", "cabin", "cable", "cake", "call", "calm", "camera", "camp", "can", "candle", "cap", "car", "card",
    "care", "carpet", "carry", "case", "castle", "cat", "catch", "cause", "cell", "chain", "chair", "chalk",
    "chance", "change", "charge", "cheap", "check", "cheese", "chest", "chicken", "chief", "child", "choice",
    "circle", "city", "claim", "class", "clean", "clear", "climb", "clock", "close", "cloth", "cloud", "coach",
    "coast", "coat", "coffee", "coin", "cold", "collar", "color", "comb", "comfort", "common", "cook", "copper",
    "copy", "corn", "corner", "cotton", "cough", "count", "country", "cover", "cow", "crack", "crane", "cream",
    "credit", "crew", "crop", "cross", "crowd", "crown", "cry", "cup", "curtain", "curve", "cushion", "cut",
    "damage", "dance", "danger", "dark", "date", "daughter", "day", "dead", "deal", "dear", "debt", "decide",
    "deep", "degree", "desk", "detail", "device", "diamond", "dinner", "direct", "dirt", "dish", "doctor", "dog",
    "door", "double", "doubt", "down", "drain", "drama", "draw", "drawer", "dream", "dress", "drink", "drive",
    "drop", "drum", "dry", "duck", "dust", "eagle", "ear", "early", "earth", "east", "edge", "egg", "eight",
    "elbow", "empty", "end", "engine", "enjoy", "enough", "enter", "equal", "error", "even", "event", "exact",
    "example", "expert", "eye", "face", "fact", "factor", "fail", "fair", "fall", "family", "farm", "fast",
    "father", "fear", "feather", "feed", "field", "fight", "film", "final", "finger", "fire", "first", "fish",
    "fix", "flag", "flame", "flat", "floor", "flower", "fly", "fold", "food", "foot", "force", "forest", "fork",
    "form", "fox", "frame", "free", "fresh", "friend", "front", "fruit", "full", "fun", "garden", "gate", "gift",
    "girl", "give", "glass", "glove", "goat", "gold", "good", "grain", "grape", "grass", "great", "green", "grey",
    "ground", "group", "grow", "guard", "guess", "guide", "hair", "hall", "hammer", "hand", "happy", "harbor",
    "hat", "head", "heart", "heat", "heavy", "help", "hill", "history", "hole", "home", "honey", "hook", "hope",
    "horn", "horse", "hospital", "hour", "house", "idea", "image", "inch", "income", "ink", "insect", "iron",
    "island", "jacket", "jelly", "jewel", "join", "journey", "judge", "juice", "jump", "kettle", "key", "kind",
    "king", "kiss", "kitchen", "knee", "knife", "knot", "label", "ladder", "lake", "lamp", "land", "language",
    "large", "laugh", "lawyer", "lead", "leaf", "learn", "leather", "left", "leg", "lemon", "letter", "level",
    "library", "lift", "light", "limit", "line", "linen", "lion", "lip", "liquid", "list", "little", "lock", "long",
    "loud", "love", "low", "lunch", "machine", "magic", "mail", "main", "map", "market", "mass", "match", "meal",
    "meat", "medal", "memory", "metal", "middle", "milk", "mind", "mine", "minute", "mirror", "money", "monkey",
    "month", "moon", "morning", "mother", "motion", "mountain", "mouse", "mouth", "move", "muscle", "music", "nail",
    "name", "narrow", "nation", "neck", "needle", "nerve", "nest", "net", "news", "night", "noise", "north", "nose",
    "note", "number", "nut", "oak", "ocean", "offer", "office", "oil", "old", "onion", "open", "orange", "order",
    "oven", "owner", "page", "pain", "paint", "pair", "paper", "parcel", "park", "party", "paste", "path", "peace",
    "pen", "pencil", "person", "piano", "picture", "pig", "pin", "pipe", "place", "plane", "plant", "plate", "play",
    "pocket", "point", "poison", "polish", "pot", "potato", "powder", "power", "price", "print", "prison", "prize",
    "public", "pump", "punch", "purple", "push", "quick", "quiet", "rabbit", "rail", "rain", "range", "rat", "ray",
    "reason", "record", "red", "rest", "rice", "ring", "river", "road", "rock", "roof", "room", "root", "rope",
    "rose", "round", "rule", "salt", "sand", "scale", "school", "science", "screw", "sea", "seat", "second", "seed",
    "shade", "shadow", "shape", "sheep", "shelf", "shell", "ship", "shirt", "shoe", "side", "signal", "silk",
    "silver", "sister", "size", "skin", "skirt", "sky", "sleep", "slope", "smile", "smoke", "snake", "snow", "soap",
    "sock", "soft", "song", "sound", "soup", "south", "space", "spade", "sponge", "spoon", "spring", "square",
    "stage", "stamp", "star", "start", "station", "steam", "steel", "stem", "step", "stick", "stone", "store",
    "storm", "story", "street", "string", "sugar", "summer", "sun", "swim", "table", "tail", "talk", "taste", "tax",
    "tea", "teacher", "team", "test", "thread", "throat", "thumb", "ticket", "tiger", "time", "tin", "toe",
    "tongue", "tooth", "top", "town", "toy", "trade", "train", "tray", "tree", "truck", "tune", "turn", "umbrella",
    "uncle", "valley", "value", "verse", "vessel", "view", "voice", "wall", "war", "wash", "watch", "water", "wave",
    "wax", "weather", "week", "wheel", "whip", "whistle", "window", "wine", "wing", "winter", "wire", "woman",
    "wood", "wool", "word", "work", "worm", "wound", "yard", "year", "yellow", "young", "zebra", "zone"
)

# Plural nouns for syllogisms (category words that read naturally after "All" / "Some").
PLURALS = (
    "actors", "artists", "bakers", "birds", "cats", "chefs", "children", "cooks", "dancers", "doctors", "dogs",
    "drivers", "engineers", "farmers", "fish", "gardeners", "horses", "hunters", "insects", "judges", "kings",
    "lawyers", "lions", "mammals", "musicians", "nurses", "painters", "parents", "pilots", "players", "poets",
    "queens", "reptiles", "sailors", "singers", "soldiers", "students", "swimmers", "tailors", "teachers", "tigers",
    "travelers", "voters", "whales", "writers"
)
# fmt: on

if len(set(WORDS)) != len(WORDS) or len(set(PLURALS)) != len(PLURALS):  # pragma: no cover
    raise RuntimeError("duplicate words in thinkrl.tasks.words")
