//! Name and place lists for `gen-patients`: Indian given and family names in Latin script with
//! their Devanagari spelling, grouped by the communities and regions a Delhi public hospital sees,
//! and real places (city, district, state, PIN code of the head post office).
//!
//! Each list is one string: entries separated by commas, each `Latin Devanagari [weight][m|f]`.
//! The weight (default 1) makes common names common, which is what makes prefix search hard;
//! `m`/`f` restricts a family name to one sex (Kaur, Devi, Begum are women's; Singh in the
//! Punjabi list is men's). Written by hand for this benchmark; spellings are the usual ones.

/// One community/region: its share of the hospital's patients, names and places.
pub struct Group {
    pub key: &'static str,
    pub weight: u32,
    pub male: &'static str,
    pub female: &'static str,
    pub family: &'static str,
    /// `City|District|State|PIN|weight` separated by `;`.
    pub places: &'static str,
}

pub const GROUPS: &[Group] = &[
    Group {
        key: "hindi",
        weight: 55,
        male: "Ramesh रमेश 12, Suresh सुरेश 10, Rajesh राजेश 10, Mahesh महेश 6, Dinesh दिनेश 6, Mukesh मुकेश 8, Rakesh राकेश 8, \
               Sanjay संजय 10, Vijay विजय 8, Ajay अजय 8, Amit अमित 12, Sumit सुमित 6, Rahul राहुल 12, Rohit रोहित 8, Mohit मोहित 6, \
               Ankit अंकित 6, Deepak दीपक 8, Manoj मनोज 10, Anil अनिल 8, Sunil सुनील 8, Ravi रवि 6, Raju राजू 6, Ram राम 6, \
               Shyam श्याम 4, Mohan मोहन 5, Sohan सोहन 2, Krishna कृष्ण 3, Gopal गोपाल 3, Arun अरुण 4, Varun वरुण 3, Vikas विकास 6, \
               Vivek विवेक 5, Alok आलोक 3, Ashok अशोक 6, Pankaj पंकज 6, Pradeep प्रदीप 6, Sandeep संदीप 6, Naveen नवीन 4, \
               Praveen प्रवीण 4, Satish सतीश 4, Santosh संतोष 5, Aman अमन 5, Aryan आर्यन 4, Aarav आरव 5, Vihaan विहान 3, \
               Ayush आयुष 5, Harsh हर्ष 4, Yash यश 4, Shivam शिवम 6, Saurabh सौरभ 5, Gaurav गौरव 6, Nitin नितिन 5, Sachin सचिन 5, \
               Akash आकाश 5, Prakash प्रकाश 5, Om ओम 2, Brijesh बृजेश 3, Umesh उमेश 4, Yogesh योगेश 4, Jitendra जितेंद्र 4, \
               Dharmendra धर्मेंद्र 4, Surendra सुरेंद्र 4, Narendra नरेंद्र 3, Virendra वीरेंद्र 3, Rajendra राजेंद्र 4, \
               Mahendra महेंद्र 3, Devendra देवेंद्र 3, Shailendra शैलेंद्र 2, Hari हरि 2, Lalit ललित 3, Kamal कमल 3, Vinod विनोद 5, \
               Pramod प्रमोद 4, Subhash सुभाष 3, Anand आनंद 3, Abhishek अभिषेक 6, Aditya आदित्य 5, Kunal कुणाल 3, Rajat रजत 3, \
               Tarun तरुण 3, Neeraj नीरज 4, Pawan पवन 5, Ashish आशीष 5, Manish मनीष 6, Girish गिरीश 2, Babulal बाबूलाल 2, \
               Shankar शंकर 3, Ganesh गणेश 3, Jagdish जगदीश 3, Kailash कैलाश 3, Lakshman लक्ष्मण 2, Bharat भरत 3, \
               Ramprasad रामप्रसाद 2, Kishore किशोर 3, Dilip दिलीप 3, Sushil सुशील 3, Anuj अनुज 3, Ritesh रितेश 3, Hemant हेमंत 3, \
               Sudhir सुधीर 2, Ranjit रंजीत 2, Chandan चंदन 2, Munna मुन्ना 2, Pappu पप्पू 2, Sonu सोनू 3, Monu मोनू 2, \
               Rampal रामपाल 2, Rameshwar रामेश्वर 1, Shiv शिव 3, Bhagwan भगवान 1, Kanhaiya कन्हैया 2, Ravindra रवींद्र 2",
        female: "Sunita सुनीता 12, Anita अनीता 8, Geeta गीता 8, Seema सीमा 8, Rekha रेखा 6, Neha नेहा 10, Pooja पूजा 12, Priya प्रिया 10, \
                 Kavita कविता 6, Savita सविता 6, Sarita सरिता 5, Mamta ममता 6, Suman सुमन 6, Usha उषा 5, Asha आशा 5, Kiran किरण 5, \
                 Meena मीना 5, Reena रीना 4, Radha राधा 4, Sita सीता 4, Laxmi लक्ष्मी 5, Saroj सरोज 4, Shanti शांति 4, Kamla कमला 4, \
                 Pushpa पुष्पा 4, Urmila उर्मिला 3, Nirmala निर्मला 4, Sangeeta संगीता 4, Manju मंजू 5, Anju अंजू 4, Rani रानी 4, \
                 Sapna सपना 4, Preeti प्रीति 5, Jyoti ज्योति 6, Nisha निशा 5, Ritu रितु 4, Shweta श्वेता 4, Swati स्वाति 4, \
                 Divya दिव्या 4, Anjali अंजलि 6, Komal कोमल 4, Khushi खुशी 4, Ananya अनन्या 4, Aadhya आद्या 3, Saanvi सान्वी 3, \
                 Diya दिया 3, Riya रिया 4, Sneha स्नेहा 4, Payal पायल 3, Poonam पूनम 5, Rinki रिंकी 2, Pinki पिंकी 2, Babita बबीता 3, \
                 Kusum कुसुम 3, Sushma सुषमा 3, Vandana वंदना 3, Archana अर्चना 3, Madhu मधु 3, Renu रेणु 3, Shalini शालिनी 3, \
                 Shobha शोभा 2, Lata लता 2, Parvati पार्वती 2, Durga दुर्गा 2, Kanchan कंचन 2, Mansi मानसी 2, Tanvi तन्वी 2, \
                 Isha ईशा 2, Nandini नंदिनी 3, Shivani शिवानी 3, Sakshi साक्षी 4, Aarti आरती 4, Bhawna भावना 3, Uma उमा 2, \
                 Vimla विमला 3, Shakuntala शकुंतला 2, Sheela शीला 3, Premwati प्रेमवती 2, Ramwati रामवती 2, Phoolmati फूलमती 1, \
                 Rajkumari राजकुमारी 2, Guddi गुड्डी 1, Chanda चंदा 2",
        family: "Sharma शर्मा 40, Verma वर्मा 20, Gupta गुप्ता 20, Singh सिंह 50, Kumar कुमार 40m, Yadav यादव 30, Mishra मिश्रा 12, \
                 Pandey पांडे 12, Tiwari तिवारी 10, Shukla शुक्ला 8, Dubey दुबे 8, Chaudhary चौधरी 12, Jha झा 6, \
                 Srivastava श्रीवास्तव 8, Saxena सक्सेना 5, Agarwal अग्रवाल 10, Jain जैन 8, Bansal बंसल 4, Goel गोयल 4, \
                 Mittal मित्तल 4, Garg गर्ग 4, Rawat रावत 5, Negi नेगी 3, Bisht बिष्ट 3, Thakur ठाकुर 6, Chauhan चौहान 7, \
                 Rajput राजपूत 4, Meena मीणा 5, Prajapati प्रजापति 5, Kushwaha कुशवाहा 5, Maurya मौर्य 4, Paswan पासवान 4, \
                 Jatav जाटव 4, Valmiki वाल्मीकि 2, Nishad निषाद 3, Sahu साहू 4, Tyagi त्यागी 3, Malik मलिक 3, Dahiya दहिया 2, \
                 Sangwan सांगवान 2, Bhatt भट्ट 3, Joshi जोशी 6, Pant पंत 2, Trivedi त्रिवेदी 3, Chaturvedi चतुर्वेदी 2, \
                 Dwivedi द्विवेदी 3, Upadhyay उपाध्याय 3, Awasthi अवस्थी 2, Bajpai बाजपेयी 2, Rathore राठौर 3, Kashyap कश्यप 3, \
                 Lal लाल 3, Prasad प्रसाद 6, Mahto महतो 3, Mandal मंडल 3, Sinha सिन्हा 5, Ranjan रंजन 2, Tripathi त्रिपाठी 4, \
                 Devi देवी 25f, Kumari कुमारी 10f, Saini सैनी 3, Baghel बघेल 2, Solanki सोलंकी 2, Gautam गौतम 4, Bharti भारती 3",
        places: "New Delhi|New Delhi|Delhi|110029|20; Delhi|South Delhi|Delhi|110017|12; Delhi|North West Delhi|Delhi|110085|12; \
                 Delhi|East Delhi|Delhi|110092|12; Delhi|Shahdara|Delhi|110032|8; Delhi|West Delhi|Delhi|110018|8; \
                 Delhi|South West Delhi|Delhi|110075|8; Delhi|North East Delhi|Delhi|110094|8; Noida|Gautam Buddh Nagar|Uttar Pradesh|201301|8; \
                 Ghaziabad|Ghaziabad|Uttar Pradesh|201001|8; Gurugram|Gurugram|Haryana|122001|6; Faridabad|Faridabad|Haryana|121001|6; \
                 Meerut|Meerut|Uttar Pradesh|250001|4; Agra|Agra|Uttar Pradesh|282001|3; Mathura|Mathura|Uttar Pradesh|281001|2; \
                 Aligarh|Aligarh|Uttar Pradesh|202001|3; Bareilly|Bareilly|Uttar Pradesh|243001|3; Lucknow|Lucknow|Uttar Pradesh|226001|3; \
                 Kanpur|Kanpur Nagar|Uttar Pradesh|208001|3; Prayagraj|Prayagraj|Uttar Pradesh|211001|2; Varanasi|Varanasi|Uttar Pradesh|221001|2; \
                 Gorakhpur|Gorakhpur|Uttar Pradesh|273001|2; Jhansi|Jhansi|Uttar Pradesh|284001|1; Moradabad|Moradabad|Uttar Pradesh|244001|2; \
                 Saharanpur|Saharanpur|Uttar Pradesh|247001|1; Patna|Patna|Bihar|800001|4; Gaya|Gaya|Bihar|823001|2; \
                 Muzaffarpur|Muzaffarpur|Bihar|842001|2; Darbhanga|Darbhanga|Bihar|846004|2; Bhagalpur|Bhagalpur|Bihar|812001|1; \
                 Rohtak|Rohtak|Haryana|124001|2; Hisar|Hisar|Haryana|125001|2; Panipat|Panipat|Haryana|132103|2; Sonipat|Sonipat|Haryana|131001|2; \
                 Karnal|Karnal|Haryana|132001|1; Jaipur|Jaipur|Rajasthan|302001|3; Alwar|Alwar|Rajasthan|301001|2; Ajmer|Ajmer|Rajasthan|305001|1; \
                 Jodhpur|Jodhpur|Rajasthan|342001|1; Kota|Kota|Rajasthan|324001|1; Bikaner|Bikaner|Rajasthan|334001|1; \
                 Bhopal|Bhopal|Madhya Pradesh|462001|2; Indore|Indore|Madhya Pradesh|452001|2; Gwalior|Gwalior|Madhya Pradesh|474001|2; \
                 Jabalpur|Jabalpur|Madhya Pradesh|482001|1; Dehradun|Dehradun|Uttarakhand|248001|2; Haridwar|Haridwar|Uttarakhand|249401|1; \
                 Ranchi|Ranchi|Jharkhand|834001|2; Jamshedpur|East Singhbhum|Jharkhand|831001|1; Shimla|Shimla|Himachal Pradesh|171001|1; \
                 Jammu|Jammu|Jammu and Kashmir|180001|1",
    },
    Group {
        key: "punjabi",
        weight: 7,
        male: "Gurpreet गुरप्रीत 6, Harpreet हरप्रीत 5, Manpreet मनप्रीत 5, Jaspreet जसप्रीत 4, Amarjeet अमरजीत 3, Harjeet हरजीत 2, \
               Kuldeep कुलदीप 3, Jaswinder जसविंदर 3, Gurdeep गुरदीप 2, Baljeet बलजीत 2, Balwinder बलविंदर 3, Sukhwinder सुखविंदर 3, \
               Harinder हरिंदर 2, Gurmeet गुरमीत 3, Paramjeet परमजीत 2, Navjot नवजोत 2, Arjun अर्जुन 2, Karan करण 3, \
               Rajinder राजिंदर 3, Davinder दविंदर 2, Inderjit इंदरजीत 2, Jagjit जगजीत 2, Simranjeet सिमरनजीत 2, Angad अंगद 1, \
               Tejinder तेजिंदर 1, Rohan रोहन 2, Vikram विक्रम 2",
        female: "Harpreet हरप्रीत 4, Manpreet मनप्रीत 4, Simran सिमरन 5, Jasleen जसलीन 3, Gurleen गुरलीन 2, Navneet नवनीत 3, \
                 Amandeep अमनदीप 3, Rajwinder राजविंदर 2, Kulwinder कुलविंदर 2, Jaswinder जसविंदर 2, Paramjit परमजीत 2, \
                 Baljinder बलजिंदर 2, Harleen हरलीन 2, Kirandeep किरनदीप 2, Ramandeep रमनदीप 2, Gurpreet गुरप्रीत 3, \
                 Sukhpreet सुखप्रीत 2, Parminder परमिंदर 2, Manjit मनजीत 2, Kamaljeet कमलजीत 2, Neha नेहा 2, Ritika रितिका 2",
        family: "Singh सिंह 30m, Kaur कौर 30f, Sandhu संधू 4, Gill गिल 4, Sidhu सिद्धू 4, Dhillon ढिल्लों 3, Grewal ग्रेवाल 3, \
                 Brar बराड़ 2, Bajwa बाजवा 2, Randhawa रंधावा 2, Virk विर्क 1, Cheema चीमा 2, Arora अरोड़ा 6, Khanna खन्ना 4, \
                 Kapoor कपूर 5, Malhotra मल्होत्रा 5, Chopra चोपड़ा 4, Sethi सेठी 3, Bhatia भाटिया 3, Ahuja आहूजा 3, Sehgal सहगल 2, \
                 Kohli कोहली 3, Bedi बेदी 2, Walia वालिया 2, Saini सैनी 2, Narang नारंग 2, Chawla चावला 3",
        places: "Delhi|West Delhi|Delhi|110018|10; Delhi|West Delhi|Delhi|110027|6; Delhi|North West Delhi|Delhi|110034|4; \
                 Ludhiana|Ludhiana|Punjab|141001|4; Amritsar|Amritsar|Punjab|143001|4; Jalandhar|Jalandhar|Punjab|144001|3; \
                 Patiala|Patiala|Punjab|147001|3; Chandigarh|Chandigarh|Chandigarh|160017|4; Ambala|Ambala|Haryana|133001|2; \
                 Bathinda|Bathinda|Punjab|151001|1",
    },
    Group {
        key: "muslim",
        weight: 12,
        male: "Mohammad मोहम्मद 20, Ahmed अहमद 4, Imran इमरान 5, Irfan इरफ़ान 4, Salman सलमान 4, Shahid शाहिद 3, Arif आरिफ़ 3, \
               Asif आसिफ़ 4, Faisal फ़ैसल 3, Javed जावेद 3, Rashid राशिद 3, Sajid साजिद 3, Wasim वसीम 3, Nadeem नदीम 3, \
               Aamir आमिर 3, Zubair ज़ुबैर 2, Abdul अब्दुल 5, Rizwan रिज़वान 3, Sameer समीर 3, Tariq तारिक़ 2, Anwar अनवर 2, \
               Iqbal इक़बाल 2, Akbar अकबर 2, Yusuf यूसुफ़ 2, Ayaan अयान 3, Rehan रेहान 3, Arshad अरशद 3, Naseem नसीम 2, \
               Shakeel शकील 2, Jameel जमील 2, Mustafa मुस्तफ़ा 2, Hamza हमज़ा 2, Zaid ज़ैद 2, Farhan फ़रहान 2, Aslam असलम 2",
        female: "Fatima फ़ातिमा 6, Ayesha आयशा 5, Zainab ज़ैनब 3, Shabana शबाना 4, Nazia नाज़िया 3, Farzana फ़रज़ाना 3, \
                 Rukhsar रुख़सार 2, Salma सलमा 4, Shaheen शाहीन 3, Nasreen नसरीन 3, Reshma रेशमा 3, Rubina रुबीना 3, Sana सना 4, \
                 Heena हिना 3, Noor नूर 2, Mehnaz मेहनाज़ 1, Shabnam शबनम 3, Parveen परवीन 4, Sultana सुल्ताना 2, Yasmin यास्मीन 3, \
                 Khushboo ख़ुशबू 2, Afreen आफ़रीन 2, Zoya ज़ोया 2, Alina अलीना 2, Sadia सादिया 2, Anjum अंजुम 2, Tabassum तबस्सुम 2, \
                 Naseema नसीमा 2, Sabina सबीना 2",
        family: "Khan ख़ान 30, Ansari अंसारी 15, Qureshi क़ुरैशी 8, Siddiqui सिद्दीक़ी 8, Shaikh शेख़ 10, Ahmed अहमद 8, Ali अली 10, \
                 Hussain हुसैन 8, Malik मलिक 5, Mirza मिर्ज़ा 3, Rizvi रिज़वी 3, Saifi सैफ़ी 3, Mansoori मंसूरी 4, Salmani सलमानी 3, \
                 Pathan पठान 4, Beg बेग 3, Naqvi नक़वी 2, Farooqui फ़ारूक़ी 2, Usmani उस्मानी 2, Alam आलम 3, Begum बेगम 10f, \
                 Khatoon ख़ातून 10f, Bano बानो 5f",
        places: "Delhi|South East Delhi|Delhi|110025|10; Delhi|Central Delhi|Delhi|110006|8; Delhi|North East Delhi|Delhi|110053|8; \
                 Aligarh|Aligarh|Uttar Pradesh|202001|3; Moradabad|Moradabad|Uttar Pradesh|244001|3; Rampur|Rampur|Uttar Pradesh|244901|2; \
                 Bareilly|Bareilly|Uttar Pradesh|243001|2; Lucknow|Lucknow|Uttar Pradesh|226003|3; Saharanpur|Saharanpur|Uttar Pradesh|247001|2; \
                 Meerut|Meerut|Uttar Pradesh|250002|3; Patna|Patna|Bihar|800006|2; Hyderabad|Hyderabad|Telangana|500002|2; \
                 Srinagar|Srinagar|Jammu and Kashmir|190001|2; Kolkata|Kolkata|West Bengal|700017|1; Bhopal|Bhopal|Madhya Pradesh|462001|1; \
                 Mumbra|Thane|Maharashtra|400612|1; Nuh|Nuh|Haryana|122107|2",
    },
    Group {
        key: "east",
        weight: 6,
        male: "Sourav सौरव 3, Subhash सुभाष 2, Debashis देबाशीष 2, Arindam अरिंदम 2, Partha पार्थ 2, Abhijit अभिजीत 3, Sujoy सुजॉय 2, \
               Tapas तपस 2, Biswajit बिस्वजीत 2, Sandip संदीप 3, Prosenjit प्रसेनजीत 1, Animesh अनिमेष 2, Sudipto सुदीप्तो 1, \
               Ranjan रंजन 2, Amitabha अमिताभ 1, Supriyo सुप्रियो 1, Bikash बिकाश 2, Goutam गौतम 2, Dipankar दीपांकर 1, \
               Tanmoy तन्मय 2, Soumya सौम्य 2, Pritam प्रीतम 2, Jagannath जगन्नाथ 2, Bijay बिजय 2, Manas मानस 2, Subrat सुब्रत 2, \
               Pranab प्रणब 1, Bhaskar भास्कर 1, Bhupen भूपेन 1, Hemanta हेमंत 1",
        female: "Moumita मौमिता 2, Sharmila शर्मिला 2, Rupa रूपा 2, Mousumi मौसुमी 2, Sutapa सुतपा 1, Paromita पारोमिता 1, \
                 Rituparna ऋतुपर्णा 1, Ananya अनन्या 2, Tanushree तनुश्री 2, Puja पूजा 3, Soma सोमा 2, Mitali मिताली 2, Arpita अर्पिता 2, \
                 Debjani देबजानी 1, Sayani सायनी 1, Riya रिया 2, Madhumita मधुमिता 2, Chandana चंदना 1, Jharna झरना 1, \
                 Swapna स्वप्ना 2, Lipika लिपिका 1, Subhadra सुभद्रा 1, Sasmita सस्मिता 2, Mamata ममता 2, Namita नमिता 2, \
                 Pallavi पल्लवी 2, Bornali बोरनाली 1",
        family: "Das दास 15, Roy रॉय 10, Ghosh घोष 10, Chatterjee चटर्जी 8, Banerjee बनर्जी 8, Mukherjee मुखर्जी 8, Bose बोस 6, Sen सेन 6, \
                 Dutta दत्ता 6, Mondal मंडल 6, Saha साहा 5, Sarkar सरकार 6, Chakraborty चक्रवर्ती 6, Bhattacharya भट्टाचार्य 5, \
                 Paul पॉल 4, Majumdar मजूमदार 3, Biswas बिस्वास 5, Haldar हालदार 3, Mohanty मोहंती 5, Patnaik पटनायक 4, Nayak नायक 4, \
                 Sahoo साहू 4, Pradhan प्रधान 4, Behera बेहेरा 4, Swain स्वैन 2, Panda पंडा 3, Barua बरुआ 3, Bora बोरा 3, \
                 Gogoi गोगोई 3, Kalita कलिता 3, Hazarika हज़ारिका 2",
        places: "Kolkata|Kolkata|West Bengal|700001|6; Howrah|Howrah|West Bengal|711101|3; Siliguri|Darjeeling|West Bengal|734001|2; \
                 Durgapur|Paschim Bardhaman|West Bengal|713201|2; Bhubaneswar|Khordha|Odisha|751001|3; Cuttack|Cuttack|Odisha|753001|2; \
                 Guwahati|Kamrup Metropolitan|Assam|781001|3; Jorhat|Jorhat|Assam|785001|1; Delhi|South Delhi|Delhi|110019|4",
    },
    Group {
        key: "marathi",
        weight: 4,
        male: "Sachin सचिन 3, Ganesh गणेश 4, Santosh संतोष 3, Sandeep संदीप 3, Rahul राहुल 3, Prashant प्रशांत 3, Nilesh नीलेश 2, \
               Mangesh मंगेश 2, Sunil सुनील 2, Vijay विजय 2, Ajit अजित 2, Sanjay संजय 2, Mahesh महेश 2, Dattatray दत्तात्रय 1, \
               Vishal विशाल 2, Tushar तुषार 2, Swapnil स्वप्निल 2, Omkar ओंकार 2, Aniket अनिकेत 2, Shrikant श्रीकांत 2, \
               Vitthal विठ्ठल 1, Balasaheb बाळासाहेब 1, Sopan सोपान 1, Tukaram तुकाराम 1, Dnyaneshwar ज्ञानेश्वर 1, Pandurang पांडुरंग 1",
        female: "Sunita सुनीता 2, Swati स्वाती 2, Ashwini अश्विनी 3, Priyanka प्रियांका 3, Shubhangi शुभांगी 2, Vaishali वैशाली 2, \
                 Manisha मनीषा 2, Rupali रूपाली 2, Sayali सायली 2, Madhuri माधुरी 2, Pallavi पल्लवी 2, Snehal स्नेहल 2, \
                 Rohini रोहिणी 2, Mrunal मृणाल 1, Rajashri राजश्री 1, Kalpana कल्पना 2, Sulochana सुलोचना 1, Mangal मंगल 1, \
                 Jayashree जयश्री 1, Aparna अपर्णा 1, Gauri गौरी 2, Tejaswini तेजस्विनी 1",
        family: "Patil पाटील 20, Jadhav जाधव 10, Pawar पवार 10, Shinde शिंदे 10, More मोरे 8, Deshmukh देशमुख 6, Kulkarni कुलकर्णी 8, \
                 Joshi जोशी 6, Deshpande देशपांडे 5, Gaikwad गायकवाड 6, Chavan चव्हाण 8, Kale काळे 4, Salunkhe साळुंखे 3, \
                 Bhosale भोसले 5, Kamble कांबळे 8, Sawant सावंत 4, Shirke शिर्के 2, Mane माने 4, Naik नाईक 3, Wagh वाघ 3, \
                 Thorat थोरात 3, Kadam कदम 5",
        places: "Mumbai|Mumbai|Maharashtra|400001|5; Pune|Pune|Maharashtra|411001|4; Nagpur|Nagpur|Maharashtra|440001|3; \
                 Nashik|Nashik|Maharashtra|422001|2; Thane|Thane|Maharashtra|400601|2; Kolhapur|Kolhapur|Maharashtra|416001|1; \
                 Chhatrapati Sambhajinagar|Chhatrapati Sambhajinagar|Maharashtra|431001|2; Solapur|Solapur|Maharashtra|413001|1",
    },
    Group {
        key: "gujarati",
        weight: 3,
        male: "Hitesh हितेश 2, Jignesh जिग्नेश 2, Bhavesh भावेश 2, Paresh परेश 2, Nilesh नीलेश 2, Ketan केतन 2, Chirag चिराग 2, \
               Hardik हार्दिक 2, Mehul मेहुल 2, Jayesh जयेश 2, Kalpesh कल्पेश 2, Dharmesh धर्मेश 1, Rakesh राकेश 1, Bharat भरत 2, \
               Dhaval धवल 1, Parth पार्थ 2, Nirav नीरव 1, Pratik प्रतीक 2, Chandrakant चंद्रकांत 1, Mahendra महेंद्र 1, Kiran किरण 1",
        female: "Hetal हेतल 2, Nidhi निधि 2, Bhavna भावना 2, Komal कोमल 2, Krupa कृपा 2, Jinal जिनल 1, Dhara धारा 1, Falguni फाल्गुनी 1, \
                 Hiral हिरल 1, Payal पायल 2, Rupal रूपल 1, Jagruti जागृति 1, Bhumi भूमि 1, Khushbu ख़ुशबू 1, Manisha मनीषा 1, \
                 Daxa दक्षा 1, Hansa हंसा 1, Jyotsna ज्योत्स्ना 1, Kokila कोकिला 1, Urvashi उर्वशी 1",
        family: "Patel पटेल 30, Shah शाह 15, Mehta मेहता 8, Desai देसाई 8, Parmar परमार 6, Solanki सोलंकी 5, Joshi जोशी 4, \
                 Trivedi त्रिवेदी 3, Pandya पंड्या 3, Vyas व्यास 3, Thakkar ठक्कर 4, Modi मोदी 3, Gandhi गांधी 2, Bhatt भट्ट 4, \
                 Rathod राठौड़ 5, Makwana मकवाना 4, Prajapati प्रजापति 3, Vaghela वाघेला 3, Dave दवे 3, Panchal पंचाल 3",
        places: "Ahmedabad|Ahmedabad|Gujarat|380001|5; Surat|Surat|Gujarat|395001|3; Vadodara|Vadodara|Gujarat|390001|2; \
                 Rajkot|Rajkot|Gujarat|360001|2; Bhavnagar|Bhavnagar|Gujarat|364001|1; Mumbai|Mumbai Suburban|Maharashtra|400080|1",
    },
    Group {
        key: "tamil",
        weight: 3,
        male: "Murugan मुरुगन 3, Senthil सेंथिल 2, Karthik कार्तिक 3, Arun अरुण 2, Ramesh रमेश 2, Suresh सुरेश 2, Saravanan सरवणन 2, \
               Manikandan मणिकंडन 2, Prakash प्रकाश 2, Vignesh विग्नेश 2, Balaji बालाजी 2, Ganesan गणेशन 2, Rajendran राजेंद्रन 2, \
               Selvam सेल्वम 2, Muthu मुत्तु 2, Venkatesh वेंकटेश 2, Kumar कुमार 2, Dinesh दिनेश 1, Siva शिवा 2, Anand आनंद 1, \
               Srinivasan श्रीनिवासन 2, Gopal गोपाल 1, Ashwin अश्विन 1, Surya सूर्या 1",
        female: "Lakshmi लक्ष्मी 3, Priya प्रिया 2, Divya दिव्या 2, Kavitha कविता 2, Meena मीना 2, Revathi रेवती 2, Saranya सरण्या 2, \
                 Deepa दीपा 2, Geetha गीता 2, Malathi मालती 1, Valli वल्ली 1, Selvi सेल्वी 2, Anitha अनिता 2, Sangeetha संगीता 1, \
                 Jayanthi जयंती 1, Kalaivani कलैवाणी 1, Tamilselvi तमिलसेल्वी 1, Nithya नित्या 1, Gayathri गायत्री 2, \
                 Bhuvaneswari भुवनेश्वरी 1, Vasanthi वसंती 1, Pavithra पवित्रा 1",
        family: "Pillai पिल्लई 4, Iyer अय्यर 4, Iyengar अयंगर 2, Mudaliar मुदलियार 2, Nadar नाडार 3, Gounder गौंडर 3, \
                 Chettiar चेट्टियार 2, Thevar थेवर 2, Subramanian सुब्रमण्यन 4, Krishnan कृष्णन 4, Ramasamy रामसामी 3, \
                 Murugesan मुरुगेसन 2, Natarajan नटराजन 3, Rajan राजन 3, Sundaram सुंदरम 3, Kannan कन्नन 3, Raman रामन 2, \
                 Perumal पेरुमल 2, Arumugam आरुमुगम 2, Palaniswamy पलानीस्वामी 2",
        places: "Chennai|Chennai|Tamil Nadu|600001|5; Coimbatore|Coimbatore|Tamil Nadu|641001|2; Madurai|Madurai|Tamil Nadu|625001|2; \
                 Tiruchirappalli|Tiruchirappalli|Tamil Nadu|620001|1; Salem|Salem|Tamil Nadu|636001|1",
    },
    Group {
        key: "telugu",
        weight: 3,
        male: "Venkata वेंकट 3, Srinivas श्रीनिवास 3, Ramesh रमेश 2, Suresh सुरेश 2, Naresh नरेश 2, Ravi रवि 2, Rajesh राजेश 2, \
               Krishna कृष्णा 2, Nagaraju नागराजू 2, Satyanarayana सत्यनारायण 2, Anil अनिल 1, Kiran किरण 2, Prasad प्रसाद 2, \
               Chaitanya चैतन्य 1, Mahesh महेश 2, Sai साई 2, Praveen प्रवीण 1, Sridhar श्रीधर 1, Ramana रमना 1, Venu वेणु 1, \
               Harish हरीश 1, Raghu रघु 1",
        female: "Lakshmi लक्ष्मी 3, Padma पद्मा 2, Sravani श्रावणी 2, Swathi स्वाति 2, Sirisha शिरीषा 1, Lavanya लावण्या 2, \
                 Bhavani भवानी 1, Durga दुर्गा 2, Sujatha सुजाता 1, Anusha अनुषा 2, Keerthi कीर्ति 1, Madhavi माधवी 1, \
                 Ramadevi रमादेवी 1, Sailaja शैलजा 1, Vani वाणी 1, Haritha हरिता 1, Mounika मौनिका 1, Prasanna प्रसन्ना 1, \
                 Sunitha सुनीता 1, Rajeswari राजेश्वरी 1",
        family: "Reddy रेड्डी 20, Rao राव 15, Naidu नायडू 10, Chowdary चौधरी 6, Varma वर्मा 4, Raju राजू 5, Goud गौड़ 5, Setty सेट्टी 3, \
                 Murthy मूर्ति 5, Prasad प्रसाद 4, Babu बाबू 4, Achari आचारी 2, Bandi बंडी 2, Vemula वेमुला 2, Kondapalli कोंडापल्ली 1",
        places: "Hyderabad|Hyderabad|Telangana|500001|5; Visakhapatnam|Visakhapatnam|Andhra Pradesh|530001|2; \
                 Vijayawada|NTR|Andhra Pradesh|520001|2; Guntur|Guntur|Andhra Pradesh|522001|1; Hanamkonda|Hanumakonda|Telangana|506001|1; \
                 Tirupati|Tirupati|Andhra Pradesh|517501|1",
    },
    Group {
        key: "kannada",
        weight: 2,
        male: "Manjunath मंजुनाथ 3, Basavaraj बसवराज 2, Nagesh नागेश 2, Ravi रवि 1, Shivakumar शिवकुमार 2, Prakash प्रकाश 1, \
               Raghavendra राघवेंद्र 2, Mallikarjun मल्लिकार्जुन 1, Chandrashekar चंद्रशेखर 1, Girish गिरीश 1, Praveen प्रवीण 1, \
               Siddharth सिद्धार्थ 1, Puneeth पुनीत 1, Darshan दर्शन 1, Vinay विनय 1, Harish हरीश 1",
        female: "Lakshmi लक्ष्मी 2, Savitha सविता 2, Shilpa शिल्पा 2, Rashmi रश्मि 2, Pavithra पवित्रा 1, Kavya काव्या 2, \
                 Sowmya सौम्या 1, Shwetha श्वेता 1, Geetha गीता 1, Nagamma नागम्मा 1, Mallamma मल्लम्मा 1, Sumithra सुमित्रा 1, \
                 Bhagya भाग्य 1, Rekha रेखा 1, Asha आशा 1, Chaitra चैत्रा 1",
        family: "Gowda गौड़ा 15, Shetty शेट्टी 8, Hegde हेगड़े 5, Rao राव 8, Naik नायक 4, Kulkarni कुलकर्णी 3, Patil पाटिल 5, Bhat भट 5, \
                 Acharya आचार्य 3, Kamath कामत 3, Pai पै 2, Shenoy शेनॉय 2, Murthy मूर्ति 3, Swamy स्वामी 3, Hiremath हिरेमठ 2",
        places: "Bengaluru|Bengaluru Urban|Karnataka|560001|5; Mysuru|Mysuru|Karnataka|570001|2; Hubballi|Dharwad|Karnataka|580020|1; \
                 Mangaluru|Dakshina Kannada|Karnataka|575001|1; Belagavi|Belagavi|Karnataka|590001|1",
    },
    Group {
        key: "malayali",
        weight: 2,
        male: "Anil अनिल 2, Sunil सुनील 2, Rajesh राजेश 1, Biju बिजू 2, Shaji शाजी 2, Sajeev सजीव 1, Manoj मनोज 2, Vinod विनोद 1, \
               Unnikrishnan उन्नीकृष्णन 1, Gopakumar गोपकुमार 1, Arjun अर्जुन 2, Abhilash अभिलाष 1, Hari हरि 1, Sreejith श्रीजीत 1, \
               Jithin जितिन 1, Akhil अखिल 2, Vishnu विष्णु 2, Ajith अजित 1, Pradeep प्रदीप 1",
        female: "Lakshmi लक्ष्मी 2, Anjali अंजलि 2, Sreeja श्रीजा 1, Bindu बिंदु 2, Sindhu सिंधु 2, Remya रम्या 1, Divya दिव्या 1, \
                 Aswathy अश्वती 1, Sreelakshmi श्रीलक्ष्मी 1, Reshma रेशमा 1, Jisha जिशा 1, Nisha निशा 1, Saritha सरिता 1, Beena बीना 1, \
                 Shiny शाइनी 1, Radhika राधिका 1, Athira आतिरा 1, Meera मीरा 1",
        family: "Nair नायर 20, Menon मेनन 10, Pillai पिल्लई 8, Kurup कुरुप 3, Panicker पणिक्कर 3, Nambiar नांबियार 3, Warrier वारियर 2, \
                 Namboothiri नंबूदिरी 2, Thampi तंपी 2, Kumar कुमार 5, Krishnan कृष्णन 4, Varghese वर्गीज़ 4, Thomas थॉमस 4, Kutty कुट्टी 2",
        places: "Thiruvananthapuram|Thiruvananthapuram|Kerala|695001|3; Kochi|Ernakulam|Kerala|682001|3; Kozhikode|Kozhikode|Kerala|673001|2; \
                 Thrissur|Thrissur|Kerala|680001|1; Kottayam|Kottayam|Kerala|686001|1",
    },
    Group {
        key: "christian",
        weight: 2,
        male: "Joseph जोसेफ़ 2, Thomas थॉमस 2, John जॉन 2, George जॉर्ज 2, Mathew मैथ्यू 1, Abraham अब्राहम 1, Peter पीटर 1, Paul पॉल 1, \
               Francis फ़्रांसिस 1, Anthony एंथनी 1, Sebastian सेबेस्टियन 1, Michael माइकल 1, David डेविड 1, Samuel सैमुअल 1, \
               Daniel डैनियल 1, Jacob जैकब 1, Stephen स्टीफ़न 1, Wilson विल्सन 1",
        female: "Mary मैरी 3, Maria मारिया 2, Elizabeth एलिज़ाबेथ 1, Anna अन्ना 1, Susan सूज़न 1, Grace ग्रेस 1, Rose रोज़ 1, Jessy जेसी 1, \
                 Teresa टेरेसा 1, Sophia सोफ़िया 1, Leena लीना 1, Shirley शर्ली 1, Rachel रेचल 1, Sarah सारा 1, Esther एस्थर 1, \
                 Christina क्रिस्टीना 1",
        family: "Fernandes फ़र्नांडिस 3, Pereira परेरा 2, Rodrigues रॉड्रिग्स 2, Dias डायस 1, Gomes गोम्स 1, Lobo लोबो 1, Pinto पिंटो 1, \
                 Mascarenhas मस्करेन्हास 1, Varghese वर्गीज़ 2, Mathew मैथ्यू 2, Thomas थॉमस 2, George जॉर्ज 2, Kurian कुरियन 1, \
                 Jacob जैकब 1, Joseph जोसेफ़ 2, Masih मसीह 3, Lyngdoh लिंगदोह 1, Sangma संगमा 1, Marak मारक 1",
        places: "Kochi|Ernakulam|Kerala|682001|2; Kottayam|Kottayam|Kerala|686001|2; Panaji|North Goa|Goa|403001|2; \
                 Mumbai|Mumbai Suburban|Maharashtra|400050|1; Shillong|East Khasi Hills|Meghalaya|793001|1; Chennai|Chennai|Tamil Nadu|600001|1; \
                 Delhi|South Delhi|Delhi|110017|2; Amritsar|Amritsar|Punjab|143001|1",
    },
];

/// The locality part of an address line (`{house}, {locality}`); `#` becomes a small number.
pub const LOCALITIES: &[&str] = &[
    "Gandhi Nagar",
    "Nehru Nagar",
    "Shastri Nagar",
    "Rajiv Colony",
    "Ambedkar Nagar",
    "Indira Colony",
    "Civil Lines",
    "Model Town",
    "Station Road",
    "Main Bazaar",
    "Subhash Nagar",
    "Shivaji Nagar",
    "Ram Nagar",
    "Krishna Nagar",
    "Patel Nagar",
    "Azad Nagar",
    "Sector #",
    "Ward No. #",
    "Gali No. #",
    "Block #",
    "Near Hanuman Mandir",
    "Near Govt. School",
    "Old Bus Stand Road",
    "MG Road",
    "Laxmi Nagar",
    "Vikas Puri",
    "Tilak Nagar",
    "Rajendra Nagar",
    "Kamla Nagar",
    "Janakpuri",
];

/// A parsed list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    pub latin: &'static str,
    pub devanagari: &'static str,
    pub weight: u32,
    /// `Some('m')` or `Some('f')` when only for one sex.
    pub sex: Option<char>,
}

/// Parse a list (see the module comment). Panics on a malformed entry: the lists are constants,
/// and a unit test parses them all.
pub fn parse(list: &'static str) -> Vec<Name> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let t: Vec<&'static str> = e.split_whitespace().collect();
            assert!(t.len() == 2 || t.len() == 3, "bad name entry '{e}'");
            let (weight, sex) = match t.get(2) {
                None => (1, None),
                Some(w) => {
                    let (num, sex) = match w.strip_suffix(['m', 'f']) {
                        Some(n) => (n, w.chars().last()),
                        None => (*w, None),
                    };
                    (num.parse().unwrap_or_else(|_| panic!("bad weight in '{e}'")), sex)
                }
            };
            Name { latin: t[0], devanagari: t[1], weight, sex }
        })
        .collect()
}

/// A place: city, district, state, PIN code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub city: &'static str,
    pub district: &'static str,
    pub state: &'static str,
    pub pin: &'static str,
    pub weight: u32,
}

pub fn parse_places(list: &'static str) -> Vec<Place> {
    list.split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let f: Vec<&'static str> = e.split('|').map(str::trim).collect();
            assert_eq!(f.len(), 5, "bad place '{e}'");
            Place { city: f[0], district: f[1], state: f[2], pin: f[3], weight: f[4].parse().expect("place weight") }
        })
        .collect()
}
