//! Vietnamese text as citizens type it: folding for matching names (`fold`), and a rough
//! check of whether a report is written in Vietnamese, without diacritics, or in another
//! language (`check_language`). Pure functions, no I/O.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Case- and diacritic-insensitive form of `text`: NFD, combining marks dropped, đ/Đ → d,
/// lower case, every run of non-alphanumeric characters (spaces, dots, hyphens) made one
/// space, trimmed. "Thị trấn  Tân-Phú" → "thi tran tan phu".
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Starts as if after a separator so that leading separators are dropped.
    let mut separated = true;
    for c in text.nfd() {
        if is_combining_mark(c) {
            continue;
        }
        let c = match c {
            // Đ has no decomposition in Unicode: NFD leaves it as is.
            'đ' | 'Đ' => 'd',
            c => c,
        };
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            separated = false;
        } else if !separated {
            out.push(' ');
            separated = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// What `vi_text_check` answers for a report's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Vietnamese written with its diacritics.
    Vietnamese,
    /// Vietnamese syllables typed without diacritics ("Rac thai do tran lan tren duong").
    MissingDiacritics,
    /// Anything else: English, another script, digits only.
    OtherLanguage,
    /// NULL, empty or blank.
    Empty,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Vietnamese => "vietnamese",
            Language::MissingDiacritics => "missing_diacritics",
            Language::OtherLanguage => "other_language",
            Language::Empty => "empty",
        }
    }
}

/// Very common Vietnamese syllables, written without their marks. A text of unmarked words
/// needs a couple of these before it counts as Vietnamese: syllable shape alone also fits
/// short English words ("the", "to").
const COMMON_TONELESS: &[&str] = &[
    "anh", "ban", "bi", "cac", "cay", "cho", "chua", "co", "con", "cong", "cua", "da", "dan",
    "dang", "de", "den", "di", "do", "duoc", "duong", "gay", "gi", "hang", "hien", "hoi", "khi",
    "khong", "la", "lam", "lan", "mat", "moi", "mot", "nay", "nguoi", "nha", "nhieu", "nhung",
    "nuoc", "o", "qua", "rac", "rat", "sau", "tai", "thai", "thi", "toi", "tran", "tren", "truoc",
    "truong", "tu", "va", "ve", "voi", "xa", "xe", "xin", "chao", "ngay", "dem",
];

/// English words common enough that a few of them mark a text as English.
const ENGLISH_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "at", "be", "by", "every", "for", "from", "has", "have", "he", "here",
    "in", "is", "it", "keeps", "my", "next", "no", "not", "of", "on", "or", "our", "please", "she",
    "someone", "that", "the", "there", "they", "this", "to", "was", "we", "with", "you", "your",
];

/// Initial consonants of a Vietnamese syllable, longest first.
const ONSETS: &[&str] = &[
    "ngh", "ng", "nh", "ch", "gh", "gi", "kh", "ph", "th", "tr", "qu", "b", "c", "d", "g", "h",
    "k", "l", "m", "n", "p", "r", "s", "t", "v", "x",
];
/// Vowel groups (toneless, marks dropped), longest first.
const NUCLEI: &[&str] = &[
    "uye", "uya", "uoi", "uou", "oai", "oay", "oeo", "uay", "ieu", "yeu", "ai", "ao", "au", "ay",
    "eo", "eu", "ia", "ie", "iu", "oa", "oe", "oi", "ua", "ue", "ui", "uo", "uu", "uy", "ye", "a",
    "e", "i", "o", "u", "y",
];
const CODAS: &[&str] = &["ng", "nh", "ch", "c", "m", "n", "p", "t", ""];

/// Whether an ASCII word has the shape of a Vietnamese syllable: onset? vowels coda?.
fn syllable_shaped(word: &str) -> bool {
    let starts: Vec<&str> = std::iter::once(word)
        .chain(ONSETS.iter().filter_map(|o| word.strip_prefix(o)))
        .collect();
    starts.into_iter().any(|rest| {
        NUCLEI.iter().any(|n| {
            rest.strip_prefix(n)
                .is_some_and(|coda| CODAS.contains(&coda))
        })
    })
}

/// A letter only Vietnamese (among the languages a report comes in) writes: a Latin letter
/// with a diacritic, or đ.
fn vietnamese_letter(c: char) -> bool {
    if matches!(c, 'đ' | 'Đ') {
        return true;
    }
    let mut parts = std::iter::once(c).nfd();
    let base = parts.next();
    base.is_some_and(|b| b.is_ascii_alphabetic()) && parts.any(is_combining_mark)
}

/// Whether `text` is Vietnamese, Vietnamese without diacritics, another language, or empty.
/// A heuristic on words: a text where at least 30% of the words carry Vietnamese marks is
/// Vietnamese; one whose unmarked words are nearly all shaped like Vietnamese syllables and
/// holds more common Vietnamese syllables than English stop words misses its diacritics;
/// everything else is another language.
pub fn check_language(text: Option<&str>) -> Language {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Language::Empty;
    };
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return Language::OtherLanguage;
    }
    let marked = words
        .iter()
        .filter(|w| w.chars().any(vietnamese_letter))
        .count();
    if marked * 10 >= words.len() * 3 {
        return Language::Vietnamese;
    }
    let plain: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| w.is_ascii())
        .collect();
    if plain.is_empty() {
        return Language::OtherLanguage;
    }
    let shaped = plain.iter().filter(|w| syllable_shaped(w)).count();
    let common = plain.iter().filter(|w| COMMON_TONELESS.contains(w)).count();
    let english = plain
        .iter()
        .filter(|w| ENGLISH_STOP_WORDS.contains(w))
        .count();
    if shaped * 10 >= plain.len() * 8 && common >= 2 && common > english {
        Language::MissingDiacritics
    } else {
        Language::OtherLanguage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_case_marks_and_punctuation() {
        assert_eq!(fold("Thị trấn  Tân Phú"), "thi tran tan phu");
        assert_eq!(fold("XÃ ĐỒNG TÂM"), "xa dong tam");
        assert_eq!(
            fold("  Văn phòng HĐND-UBND huyện. "),
            "van phong hdnd ubnd huyen"
        );
        assert_eq!(fold("P. Tân Bình"), "p tan binh");
        assert_eq!(fold("xa tan loi"), fold("Xã Tân Lợi"));
        assert_eq!(fold(""), "");
        assert_eq!(fold(" - "), "");
    }

    #[test]
    fn syllable_shapes() {
        for w in [
            "nguoi", "duong", "khong", "truong", "xa", "o", "ngheo", "quyen",
        ] {
            assert!(syllable_shaped(w), "{w}");
        }
        for w in ["someone", "market", "dumping", "please", "check", "next"] {
            assert!(!syllable_shaped(w), "{w}");
        }
    }

    #[test]
    fn languages() {
        let check = |t: &str| check_language(Some(t));
        assert_eq!(
            check("Rác thải đổ tràn lan trên đường"),
            Language::Vietnamese
        );
        assert_eq!(
            check("Rac thai do tran lan tren duong"),
            Language::MissingDiacritics
        );
        assert_eq!(
            check("Co nguoi tu tap ban hang rong truoc cong truong, gay mat trat tu"),
            Language::MissingDiacritics
        );
        assert_eq!(
            check("Someone keeps dumping garbage next to the market every night, please check."),
            Language::OtherLanguage
        );
        assert_eq!(check("The road is broken"), Language::OtherLanguage);
        assert_eq!(check("道路坏了"), Language::OtherLanguage);
        assert_eq!(check("12345"), Language::OtherLanguage);
        assert_eq!(check("   "), Language::Empty);
        assert_eq!(check_language(None), Language::Empty);
    }
}
