//! The web UI's words in English and Hindi. Every screen takes its text from [`Lang::t`], so a
//! missing translation is a compile error (each key is a match arm with both languages).

/// The language a page is shown in (cookie `vaidya_lang`, switched from every page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Hi,
}

/// Every text the screens show.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    SignIn,
    User,
    Password,
    TotpCode,
    TotpHint,
    SignOut,
    SignedInAs,
    Home,
    Switch,
    AuditTrail,
    AuditIntro,
    Uhid,
    Show,
    Time,
    Who,
    Role,
    Action,
    Outcome,
    From,
    Why,
    Records,
    NoEvents,
    Events,
    NothingHereYet,
    FormExpired,
    PatientSignIn,
    StaffSignIn,
    UhidOrMobile,
    UhidOrMobileHint,
    SendCode,
    Code,
    CodeSentTo,
    NotUhidOrMobile,
    CodeNotSent,
    TooManyCodes,
    WrongCode,
    CodeExpired,
    AccountBlocked,
    TryLater,
    MyAccess,
    MyAccessIntro,
    RegistrationDesk,
    FindPatient,
    SearchLabel,
    Search,
    SearchHow,
    NoneFound,
    RegisterNew,
    Name,
    GivenName,
    FamilyName,
    Sex,
    Male,
    Female,
    OtherSex,
    UnknownSex,
    BirthDate,
    AgeYears,
    Mobile,
    Register,
    PossibleDuplicates,
    NotADuplicate,
    MatchReason,
    NeedName,
    BadName,
    NeedGender,
    BadBirth,
    BadAge,
    NeedBirth,
    BadMobile,
    BeingSaved,
    UhidSlip,
    Registered,
    Print,
    ChangePassword,
    ChangePasswordIntro,
    OldPassword,
    NewPassword,
    RepeatPassword,
    PasswordsDiffer,
    Save,
}

impl Lang {
    pub fn from_code(code: &str) -> Lang {
        match code {
            "hi" => Lang::Hi,
            _ => Lang::En,
        }
    }

    /// The `lang` attribute and cookie value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Hi => "hi",
        }
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Hi,
            Lang::Hi => Lang::En,
        }
    }

    pub fn t(self, key: Key) -> &'static str {
        use Key::*;
        let (en, hi) = match key {
            SignIn => ("Sign in", "साइन इन करें"),
            User => ("User name", "उपयोगकर्ता नाम"),
            Password => ("Password", "पासवर्ड"),
            TotpCode => ("Authenticator code", "ऑथेंटिकेटर कोड"),
            TotpHint => ("Six digits from your authenticator app, if your account has one", "आपके ऑथेंटिकेटर ऐप के छह अंक, यदि आपके खाते में है"),
            SignOut => ("Sign out", "साइन आउट करें"),
            SignedInAs => ("Signed in as", "इस रूप में साइन इन"),
            Home => ("Home", "मुख्य पृष्ठ"),
            Switch => ("हिन्दी", "English"),
            AuditTrail => ("Who accessed a record", "किसने रिकॉर्ड देखा"),
            AuditIntro => (
                "Every access to a patient's record, allowed or refused, newest first: who, when, from where and why.",
                "मरीज़ के रिकॉर्ड तक हर पहुँच, अनुमत या अस्वीकृत, नवीनतम पहले: किसने, कब, कहाँ से और क्यों।",
            ),
            Uhid => ("UHID", "यूएचआईडी"),
            Show => ("Show", "दिखाएँ"),
            Time => ("Time (IST)", "समय (IST)"),
            Who => ("User", "उपयोगकर्ता"),
            Role => ("Role", "भूमिका"),
            Action => ("Action", "क्रिया"),
            Outcome => ("Outcome", "परिणाम"),
            From => ("From", "कहाँ से"),
            Why => ("Reason", "कारण"),
            Records => ("Records", "रिकॉर्ड"),
            NoEvents => ("No access to this record has been recorded.", "इस रिकॉर्ड तक कोई पहुँच दर्ज नहीं है।"),
            Events => ("events", "घटनाएँ"),
            NothingHereYet => (
                "The screens for your work are not built yet; the FHIR API serves them meanwhile.",
                "आपके काम की स्क्रीन अभी नहीं बनी हैं; तब तक FHIR API उपलब्ध है।",
            ),
            FormExpired => ("This form has expired; please try again.", "यह फ़ॉर्म समाप्त हो गया है; कृपया फिर से प्रयास करें।"),
            PatientSignIn => ("Patients: sign in", "मरीज़: साइन इन करें"),
            StaffSignIn => ("Staff sign-in", "कर्मचारी साइन इन"),
            UhidOrMobile => ("UHID or mobile number", "यूएचआईडी या मोबाइल नंबर"),
            UhidOrMobileHint => (
                "A code will be sent by SMS to the mobile number registered at the hospital.",
                "अस्पताल में दर्ज मोबाइल नंबर पर एसएमएस से एक कोड भेजा जाएगा।",
            ),
            SendCode => ("Send code", "कोड भेजें"),
            Code => ("Code from the SMS", "एसएमएस में आया कोड"),
            CodeSentTo => ("A 6-digit code was sent to", "6 अंकों का कोड भेजा गया:"),
            NotUhidOrMobile => (
                "Enter a UHID (12 digits, as on your card) or a 10-digit mobile number.",
                "यूएचआईडी (आपके कार्ड पर 12 अंक) या 10 अंकों का मोबाइल नंबर लिखें।",
            ),
            CodeNotSent => (
                "No code could be sent for this UHID or mobile number. Please ask at the registration desk.",
                "इस यूएचआईडी या मोबाइल नंबर के लिए कोड नहीं भेजा जा सका। कृपया पंजीकरण काउंटर पर पूछें।",
            ),
            TooManyCodes => ("Too many codes were asked for. Please wait 15 minutes.", "बहुत अधिक कोड माँगे गए। कृपया 15 मिनट रुकें।"),
            WrongCode => ("That code is not right. Please check the SMS and try again.", "यह कोड सही नहीं है। कृपया एसएमएस देखकर फिर से लिखें।"),
            CodeExpired => ("The code has expired or was used. Please ask for a new one.", "कोड समाप्त हो गया या उपयोग हो चुका। कृपया नया कोड माँगें।"),
            AccountBlocked => ("This account cannot sign in. Please ask at the registration desk.", "यह खाता साइन इन नहीं कर सकता। कृपया पंजीकरण काउंटर पर पूछें।"),
            TryLater => ("Something went wrong on our side. Please try again in a few minutes.", "हमारी ओर से कुछ गड़बड़ हुई। कृपया कुछ मिनट बाद फिर प्रयास करें।"),
            MyAccess => ("Who has seen my record", "मेरा रिकॉर्ड किसने देखा"),
            MyAccessIntro => (
                "Every time someone at the hospital opened or was refused your record, newest first.",
                "अस्पताल में जब भी किसी ने आपका रिकॉर्ड खोला या उसे मना किया गया, नवीनतम पहले।",
            ),
            RegistrationDesk => ("Registration desk", "पंजीकरण काउंटर"),
            FindPatient => ("Find a patient first", "पहले मरीज़ खोजें"),
            SearchLabel => ("UHID, mobile number or name", "यूएचआईडी, मोबाइल नंबर या नाम"),
            Search => ("Search", "खोजें"),
            SearchHow => ("Type a UHID (12 digits), a 10-digit mobile number, or at least two letters of a name.", "यूएचआईडी (12 अंक), 10 अंकों का मोबाइल नंबर, या नाम के कम से कम दो अक्षर लिखें।"),
            NoneFound => ("No patient found. Check the spelling, or register a new patient.", "कोई मरीज़ नहीं मिला। वर्तनी जाँचें, या नया मरीज़ पंजीकृत करें।"),
            RegisterNew => ("Register a new patient", "नया मरीज़ पंजीकृत करें"),
            Name => ("Name", "नाम"),
            GivenName => ("Name", "नाम"),
            FamilyName => ("Surname (if any)", "उपनाम (यदि हो)"),
            Sex => ("Sex", "लिंग"),
            Male => ("Male", "पुरुष"),
            Female => ("Female", "महिला"),
            OtherSex => ("Other", "अन्य"),
            UnknownSex => ("Not known", "ज्ञात नहीं"),
            BirthDate => ("Date of birth", "जन्म तिथि"),
            AgeYears => ("or age in years", "या आयु (वर्ष)"),
            Mobile => ("Mobile number", "मोबाइल नंबर"),
            Register => ("Register", "पंजीकृत करें"),
            PossibleDuplicates => ("These patients may be the same person. Open their record instead, or confirm this is someone else.", "ये मरीज़ वही व्यक्ति हो सकते हैं। उनका रिकॉर्ड खोलें, या पुष्टि करें कि यह कोई और है।"),
            NotADuplicate => ("None of these is the patient: register a new record", "इनमें से कोई यह मरीज़ नहीं है: नया रिकॉर्ड बनाएँ"),
            MatchReason => ("Why", "कारण"),
            NeedName => ("Enter the patient's name.", "मरीज़ का नाम लिखें।"),
            BadName => ("Use at most 100 letters, without < > { } [ ] \\ or \".", "अधिकतम 100 अक्षर, बिना < > { } [ ] \\ या \" के।"),
            NeedGender => ("Choose the sex.", "लिंग चुनें।"),
            BadBirth => ("Enter a real date (YYYY-MM-DD), not in the future.", "सही तिथि लिखें (YYYY-MM-DD), भविष्य की नहीं।"),
            BadAge => ("Enter the age in whole years, 0 to 130.", "आयु पूरे वर्षों में लिखें, 0 से 130।"),
            NeedBirth => ("Enter the date of birth, or the age.", "जन्म तिथि या आयु लिखें।"),
            BadMobile => ("Enter a 10-digit Indian mobile number.", "10 अंकों का भारतीय मोबाइल नंबर लिखें।"),
            BeingSaved => ("This form is being saved already; please wait, then search for the patient.", "यह फ़ॉर्म पहले से सहेजा जा रहा है; कृपया प्रतीक्षा करें, फिर मरीज़ को खोजें।"),
            UhidSlip => ("Registration slip", "पंजीकरण पर्ची"),
            Registered => ("Registered", "पंजीकृत"),
            Print => ("Print", "प्रिंट करें"),
            ChangePassword => ("Choose your password", "अपना पासवर्ड चुनें"),
            ChangePasswordIntro => ("You signed in with a one-time password. Choose your own before you go on.", "आपने एक बार के पासवर्ड से साइन इन किया है। आगे बढ़ने से पहले अपना पासवर्ड चुनें।"),
            OldPassword => ("Current (one-time) password", "वर्तमान (एक बार का) पासवर्ड"),
            NewPassword => ("New password", "नया पासवर्ड"),
            RepeatPassword => ("New password again", "नया पासवर्ड फिर से"),
            PasswordsDiffer => ("The two new passwords are not the same.", "दोनों नए पासवर्ड एक जैसे नहीं हैं।"),
            Save => ("Save", "सहेजें"),
        };
        match self {
            Lang::En => en,
            Lang::Hi => hi,
        }
    }
}
